"""A hand-written SUMO scenario (one signalised junction) for the importer's tests.

Junction C at (105, 0) with dead ends W (west), E (east), N (north). Edges: WC (a sidewalk,
SUMO lane 0, and two car lanes 1 and 2), CE, CN, NC. Connections: WC lane 1 -> CE straight
(tl index 0, via an internal lane of 7.5 m), WC lane 2 -> CN left (index 1, 4 m), NC -> CE left
(index 2, no internal lane). Program: 30 s 'Ggr', 3 s 'yyr', 20 s 'rrG', 2 s 'rry'.
"""

from __future__ import annotations

from pathlib import Path

NET = """<?xml version="1.0" encoding="UTF-8"?>
<net version="1.9">
  <edge id=":C_0" function="internal"><lane id=":C_0_0" index="0" speed="10" length="7.5" shape="100,1 110,1"/></edge>
  <edge id=":C_1" function="internal"><lane id=":C_1_0" index="0" speed="8" length="4" shape="100,4 105,5"/></edge>
  <edge id="WC" from="W" to="C">
    <lane id="WC_0" index="0" allow="pedestrian" speed="2" length="100" shape="0,-2 100,-2"/>
    <lane id="WC_1" index="1" speed="10" length="100" shape="0,1 100,1"/>
    <lane id="WC_2" index="2" speed="12" length="100" shape="0,4 100,4"/>
  </edge>
  <edge id="CE" from="C" to="E"><lane id="CE_0" index="0" speed="10" length="200" shape="110,1 310,1"/></edge>
  <edge id="CN" from="C" to="N"><lane id="CN_0" index="0" speed="8" length="50" shape="106,5 106,55"/></edge>
  <edge id="NC" from="N" to="C"><lane id="NC_0" index="0" speed="8" length="50" shape="103,55 103,5"/></edge>
  <tlLogic id="C" type="static" programID="0" offset="0">
    <phase duration="30" state="Ggr"/>
    <phase duration="3" state="yyr"/>
    <phase duration="20" state="rrG"/>
    <phase duration="2" state="rry"/>
  </tlLogic>
  <junction id="W" type="dead_end" x="0" y="0"/>
  <junction id="C" type="traffic_light" x="105" y="0"/>
  <junction id="E" type="dead_end" x="315" y="0"/>
  <junction id="N" type="dead_end" x="105" y="60"/>
  <connection from="WC" to="CE" fromLane="1" toLane="0" via=":C_0_0" tl="C" linkIndex="0" dir="s"/>
  <connection from="WC" to="CN" fromLane="2" toLane="0" via=":C_1_0" tl="C" linkIndex="1" dir="l"/>
  <connection from="NC" to="CE" fromLane="0" toLane="0" tl="C" linkIndex="2" dir="l"/>
  <connection from=":C_0" to="CE" fromLane="0" toLane="0"/>
</net>
"""

# a second way from WC to EX (through CN and NE) beside WC-CE-EX; SPEED is NE's speed limit
DETOUR = """
  <edge id="NE" from="N" to="E"><lane id="NE_0" index="0" speed="SPEED" length="100" shape="106,60 310,5"/></edge>
  <edge id="EX" from="E" to="X"><lane id="EX_0" index="0" speed="10" length="80" shape="320,1 400,1"/></edge>
  <junction id="X" type="dead_end" x="405" y="0"/>
  <connection from="CN" to="NE" fromLane="0" toLane="0" dir="r"/>
  <connection from="CE" to="EX" fromLane="0" toLane="0" dir="s"/>
  <connection from="NE" to="EX" fromLane="0" toLane="0" dir="l"/>
</net>"""


ROUTES = """<routes>
  <vType id="car" length="4" minGap="2" accel="3" decel="5" tau="1.5"/>
  <vehicle id="early" depart="50" type="car"><route edges="WC CE"/></vehicle>
  <vehicle id="v0" depart="100.0" type="car"><route edges="WC CE"/></vehicle>
  <trip id="t0" depart="100.4" type="car" from="WC" to="CN"/>
  <flow id="f0" begin="110" end="120" period="4" type="car" from="NC" to="CE"/>
  <vehicle id="late" depart="200" type="car"><route edges="WC CE"/></vehicle>
</routes>
"""

CONFIG = """<configuration>
  <input><net-file value="tiny.net.xml"/><route-files value="tiny.rou.xml"/></input>
  <time><begin value="100"/><end value="160"/></time>
</configuration>
"""


def write_tiny(folder: Path, net: str = NET, routes: str = ROUTES, config: str = CONFIG) -> Path:
    """The scenario's three files in `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.net.xml").write_text(net)
    (folder / "tiny.rou.xml").write_text(routes)
    (folder / "tiny.sumocfg").write_text(config)
    return folder


# a second light at E (the detour's CE -> EX and NE -> EX), beside the unsignalised N (CN -> NE)
_LIGHT_E = """  <tlLogic id="TL2" type="static" programID="0" offset="0">
    <phase duration="25" state="Gr"/>
    <phase duration="3" state="yr"/>
    <phase duration="25" state="rG"/>
    <phase duration="3" state="ry"/>
  </tlLogic>
"""


def two_lights_net(light_c: str = "TL1", light_e: str = "TL2") -> str:
    """NET with DETOUR: junctions C (run by the light `light_c`), E (by `light_e`) and the
    unsignalised N (one phase), each an intersection; SUMO light ids other than the junctions'."""
    # N's movement straight: an unsignalised junction with more than a right turn
    detour = DETOUR.replace("SPEED", "10").replace('toLane="0" dir="r"', 'toLane="0" dir="s"')
    for movement, index in (('from="CE" to="EX"', 0), ('from="NE" to="EX"', 1)):
        detour = detour.replace(f'{movement} fromLane="0" toLane="0"',
                                f'{movement} fromLane="0" toLane="0" tl="{light_e}" linkIndex="{index}"')
    net = NET.replace("</net>\n", _LIGHT_E.replace('"TL2"', f'"{light_e}"') + detour)
    return net.replace('tlLogic id="C"', f'tlLogic id="{light_c}"').replace('tl="C"', f'tl="{light_c}"')
