"""Messages keyed every which way on SUMO networks whose light ids clash (agents/deploy/message_keys.py):
random subsets of every key the network has (junction ids, light ids, one that names nothing), an entry null or
with a wrong phase now and then, on tests/sumo_fixtures.py's two lights and N with their light ids edited to
clash. Whatever the message, the service's fast path answers as the slow path (docs/deployment.md,
"Protocol"), every intersection that needs readings is answered, and readings go to the intersection a key
names alone."""

from __future__ import annotations

import json
import random

import pytest

from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import handle_line, reply_line
from tests.deploy_fixtures import readings_message, write_sealed
from tests.test_deploy_sumo_keys import _export

# C's, E's and N's sumo.tls_id: as exported; C's light named as the unsignalised N; C's as the light E; both
# named as their junctions; one light for C and E; C run by 'E' and E by 'C' (no key names either alone)
LIGHT_IDS = [("TL1", "TL2", None), ("N", "TL2", None), ("E", "TL2", None), ("C", "E", None),
             ("TL1", "TL1", None), ("E", "C", None)]


@pytest.mark.parametrize("lights", LIGHT_IDS, ids=["-".join(map(str, ids)) for ids in LIGHT_IDS])
def test_any_keying_is_answered_alike_both_ways_and_reaches_its_own_intersection(tmp_path_factory, tmp_path,
                                                                                  lights):
    onnx_path, json_path = _export(tmp_path_factory)
    meta = json.loads(json_path.read_text())
    for entry, light in zip(meta["intersections"], lights):
        entry["sumo"]["tls_id"] = light
    (tmp_path / "m.onnx").write_bytes(onnx_path.read_bytes())
    write_sealed(tmp_path / "m.json", meta)
    fast, slow = PolicyRuntime(tmp_path / "m.onnx"), PolicyRuntime(tmp_path / "m.onnx")
    keys = fast.keys
    every = sorted(set(keys.ids) | {light for light in keys.lights if light} | {"X"})
    rng = random.Random(7)
    taken = 0
    for step in range(150):
        t = 5.0 * step
        full = readings_message(slow, t)["intersections"]
        message = {}
        for key in rng.sample(every, rng.randint(0, len(every))):
            row = keys.index.get(key, keys.ambiguous.get(key, [0])[0])
            entry = dict(full[keys.ids[row]], phase=int(slow.signals.cur_phase[row]) if step else 0,
                         time_in_phase=float(t - slow.signals.switched_at[row]) if step else 0.0)
            draw = rng.random()
            message[key] = None if draw < 0.1 else dict(entry, phase=7) if draw < 0.15 else entry
        line = json.dumps({"t": t, "intersections": message})
        taken += fast.whole_message.decode(json.loads(line)) is not None
        reply = handle_line(slow, line, 1)
        assert json.loads(reply_line(fast, line.encode(), 1)) == reply, line
        answered = reply["commands"]
        for row in keys.required.tolist():  # never left without a command
            assert keys.ids[row] in answered or keys.lights[row] in answered, (keys.ids[row], line)
        for key, command in answered.items():
            row = keys.index.get(key)
            given = message.get(key)
            once = sum(keys.index.get(other) == row for other in message) == 1  # keyed twice: neither taken
            if row is not None and once and isinstance(given, dict) and given["phase"] == 7:
                # the wrong phase given under this key is found at the intersection it names, not elsewhere
                assert any(fault.startswith("phase: 7 is not") for fault in command["faults"]), (key, line)
    # the fast path was exercised, where every light has a key naming it alone (E-C: none has, all go the slow way)
    keyable = all(keys.ids[row] in keys.index or keys.lights[row] in keys.index for row in keys.required.tolist())
    assert (taken > 0) == keyable
