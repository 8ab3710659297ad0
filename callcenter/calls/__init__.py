"""Call control: every call with a citizen, from the INVITE to the case row.

- `model.py`, `table.py`, `controller.py` — pure: the call's state, events and actions, its
  transitions as a table, and `step(state, event, now) -> (state, actions)`.
- `call.py` — the driver of one call: performs the actions (SIP, media, legs, ACD, IVR,
  recordings) and alone touches the clock and tasks for it.
- `router.py` — admission and routing of new calls, the live calls, the watchdog; the
  `CallControl` port the ACD driver uses (`deliver`, `describe`, `place_callback`).
- `legs.py` (our calls to agents and outside numbers), `callback.py` (callbacks),
  `recording.py` (WAV files, registered by one event), `ports.py` (typed ports),
  `acd_driver.py` (drives the pure ACD; talks to calls only through `CallControl`).
"""

from callcenter.calls.call import Call
from callcenter.calls.callback import CallbackCall
from callcenter.calls.controller import attempt_outcome, step
from callcenter.calls.legs import AgentLeg, use_answer
from callcenter.calls.ports import CallControl, CallInfo, CallServices, SipPort
from callcenter.calls.recording import FLUSH_EVERY_FRAMES, SPEECH_RMS, SYNC_EVERY_S, _Recording
from callcenter.calls.router import CallRouter
from callcenter.calls.table import transitions

__all__ = [
    "AgentLeg", "Call", "CallControl", "CallInfo", "CallRouter", "CallServices", "CallbackCall", "SipPort",
    "FLUSH_EVERY_FRAMES", "SPEECH_RMS", "SYNC_EVERY_S", "_Recording", "attempt_outcome", "step", "transitions",
    "use_answer",
]
