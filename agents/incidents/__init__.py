"""Incident detection algorithms (a calibrated blockage rule and a learned model) over the lane
detector recordings of envs.incidents.detection.

May import envs; nothing else from agents.
"""
