"""Learning-rate sweep of the example task: `baton grid example` (a few seconds per XP on CPU)."""

from baton.xp.explore import Launcher, explorer


@explorer(metrics=["train.loss", "valid.loss", "evaluate.rmse"])
def explore(launcher: Launcher) -> None:
    launcher.bind_(solver="example")
    for lr in [1e-3, 3e-3, 1e-2]:
        launcher(optim={"lr": lr})
