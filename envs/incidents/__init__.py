"""Perturbations of a scenario (lane incidents, demand surges, detector faults), probe-vehicle
reports, and incident detection's recording and scoring.

May import envs.scenario and envs.engine only.
"""
