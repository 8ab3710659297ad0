"""Speech-to-text: one port (`port`) and two backends — vosk for streaming and spoken menu
answers (`vosk_stt`), faster-whisper for accurate batch transcripts (`whisper_stt`) — run in
a bounded process pool (`pool`) so recognition never runs on the event loop.

Backends are imported lazily by their modules; importing this package loads no model.
"""

from callcenter.stt.port import (
    FinalTranscript,
    PartialTranscript,
    Recognizer,
    Segment,
    StreamingRecognizer,
    SttError,
    Transcript,
)

__all__ = [
    "FinalTranscript", "PartialTranscript", "Recognizer", "Segment", "StreamingRecognizer",
    "SttError", "Transcript",
]
