"""Solvers: the engine (BaseSolver) and the ways in (StandardSolver, Brain, ExtensibleSolver)."""

from .loop import BaseSolver
from .registry import get_solver_class, register_solver
from .stage import Stage
from .standard import StandardSolver

__all__ = ["BaseSolver", "Stage", "StandardSolver", "get_solver_class", "register_solver"]
