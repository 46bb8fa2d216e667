"""Incident classifiers (a calibrated blockage rule, a learned model, and a rule fusing probe-vehicle
reports with the lane detectors) over the recordings of envs.incidents.detection: each maps a
copy's readings to alarms.

May import envs; nothing else from agents.
"""
