"""The AudioCraft pipeline at CPU size, on the built-in dataset: `baton grid lm/debug`.

Three XPs, run in this order: a codec at 250 frames/s, a classifier, and a label-conditioned
language model over the codec's tokens, which names the other two by signature. Run it again
and it resumes where it stopped (a finished XP is skipped).
"""

from baton.xp.explore import Launcher, explorer


@explorer(metrics=["valid.mel", "test.accuracy", "valid.ce", "evaluate.acc_cfg1", "evaluate.acc_cfg3",
                   "evaluate.fad_cfg3"])
def explore(launcher: Launcher) -> None:
    # The demo's codec at a hop of 64, trained longer, on 1 s crops, with a slow EMA: the recipe
    # this pipeline's numbers (docs/pipeline.md) were measured with.
    codec = launcher(solver="compression/debug", model={"ratios": [8, 4, 2]},
                     dataset={"train": {"segment_duration": 1.0}}, optim={"epochs": 6, "ema": {"decay": 0.99}})
    classifier = launcher(solver="classification/debug")
    launcher(
        solver="lm/debug",
        compression_model_checkpoint=f"//sig/{codec.sig}",
        classifier_checkpoint=f"//sig/{classifier.sig}",
    )
