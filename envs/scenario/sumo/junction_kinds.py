"""SUMO's junction types and link states: which change who must stop, and how the import treats each.

gridlight's right of way is one rule: a movement on a permissive green (every movement of an unsignalised
junction, SUMO's ``g``) gives way to the movements its junction's ``<request>`` ``response`` bits name
(with ``engine.junction_yielding``), without stopping first. Per SUMO junction type (NLJunctionControlBuilder
builds the junction's logic from it; MSLink acts on each link's state):

- represented: ``priority`` (links ``M``/``m``), ``right_before_left`` and ``left_before_right`` (``=``: the
  requests say who is on the right), ``traffic_light`` and ``traffic_light_right_on_red`` (the program),
  and the types SUMO builds without a right-of-way logic (`NO_LOGIC_TYPES`: ``unregulated``,
  ``traffic_light_unregulated``, ``dead_end``, ``district``): nobody yields there, in SUMO too, so their
  ``<request>``s, if written, are not read;
- approximated and counted (`STOP_STATES`), per unsignalised link: a stop sign (``s``, ``priority_stop``'s
  minor links) and an all-way stop (``w``, ``allway_stop``) make SUMO's vehicles stop at the line before
  they may go; a zipper link (``Z``, ``zipper``) merges alternately. All are driven as yields by the
  requests, without the stop (``*_links_driven_as_yield``). A program's ``s`` (a right turn on red after a
  stop, ``traffic_light_right_on_red``) is a permissive green (``right_on_red_signals_driven_as_yield``,
  counted in `programs`). A ``rail_crossing`` or ``rail_signal`` junction that passenger cars cross is
  driven open (``rail_crossing_links_driven_open``, per car link): SUMO closes it only while a train comes,
  and the import leaves trains out (counted as ``rail_vehicles_left_out`` and the like), so its cars drive
  as at SUMO's crossing with no train; the road links' right of way is the file's requests;
- refused: a dead-end link (``-``), and a type or link state SUMO does not know (SUMO refuses them too).

A signalised link's own ``state`` is not counted: its light's program sets it."""

from __future__ import annotations

# SUMO 1.28's junction types (SUMOXMLDefinitions); "unknown" is among its names but no junction of it loads
JUNCTION_TYPES = ("priority", "traffic_light", "right_before_left", "left_before_right", "unregulated",
                  "traffic_light_unregulated", "traffic_light_right_on_red", "priority_stop", "allway_stop",
                  "zipper", "rail_signal", "rail_crossing", "dead_end", "DEAD_END", "district", "internal")
# built as an MSNoLogicJunction: no link waits for another, whatever <request>s the file holds
NO_LOGIC_TYPES = frozenset(("unregulated", "traffic_light_unregulated", "dead_end", "DEAD_END", "district"))
# a traffic light of trains that the junction itself builds (no <tlLogic>); trains are not simulated
RAIL_TYPES = frozenset(("rail_signal", "rail_crossing"))
RAIL_OPEN = "rail_crossing_links_driven_open"  # the report's count of car links at such a junction
# SUMO's link states (SUMOXMLDefinitions::linkStateValues)
LINK_STATES = "GgruYyoOMm=swZ-"
DEAD_END_STATE = "-"
# an unsignalised link's state SUMO drives with a stop or a merge the engine does not make -> its report key
STOP_STATES = {"s": "stop_sign_links_driven_as_yield", "w": "allway_stop_links_driven_as_yield",
               "Z": "zipper_links_driven_as_yield"}
