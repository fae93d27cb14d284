"""Run orchestration, written once: a config's data and model built (``build``), trained into a run folder or
from arrays (``train``), a run folder loaded back onto any device (``load``), and its test metrics, figures and
report (``finish``). The command line, ``vaekit.fit`` and ``VAEEmbedding`` all go through it.

It sits above training/, evaluation/, plots/ and models/; none of them imports it. What a family or an objective
needs from a run comes through its registry entry (a family's ``prepare`` hook, an objective's ``supervised``
flag and its trainer hooks) and the model's capabilities, never through a branch on a name.
"""

from vaekit.runs.build import Prepared, load_splits, prepare, prepare_family, with_recorded_constants
from vaekit.runs.devices import resolve_device
from vaekit.runs.finish import build_report, finish, run_figures, write_images
from vaekit.runs.folder import check_resume_config, check_run_folder, start_fresh
from vaekit.runs.load import load_run, load_test_data
from vaekit.runs.train import TrainingData, train_arrays, train_model, train_run
from vaekit.training.checkpoint import load_weights, state_dict_problem

__all__ = ["Prepared", "prepare", "load_splits", "prepare_family", "with_recorded_constants", "resolve_device",
           "build_report", "finish", "run_figures", "write_images", "check_resume_config", "check_run_folder",
           "start_fresh", "load_run", "load_test_data", "TrainingData", "train_arrays", "train_model",
           "train_run", "load_weights", "state_dict_problem"]
