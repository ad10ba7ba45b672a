"""One module per `baton` subcommand, each with `add_arguments(parser)` and `main(args) -> int`."""
