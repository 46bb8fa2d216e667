"""Incident classifiers (a calibrated blockage rule and a learned model) over the lane-detector
recordings of envs.incidents.detection: each maps a copy's readings to alarms.

May import envs; nothing else from agents.
"""
