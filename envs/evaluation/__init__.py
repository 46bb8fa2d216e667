"""Measuring controllers: the metrics hub, statistics, reports and plots, and running several
controllers over one batch (`mixture`).

May import envs.scenario, envs.engine and envs.incidents; never envs.rl or agents.
"""
