"""Numbers in report text: spoken Chinese numerals to digits, and phone numbers however
they were said or typed.

Spoken digit strings use 零/〇/洞 = 0, 一/幺 = 1, 二/两 = 2, 拐 = 7, 勾 = 9 (the radio
style some callers use); positional numbers (二十三, 三百五) are read by value. A run of
numerals broken by spaces, dashes or 杠 (how a caller or an ASR engine groups a number:
"幺三八 零零一三 八零零一", "零二五杠八三三四五六七八") is one number when it has three
digits or more in all. Phone numbers: mobiles (11 digits from 13–19), landlines with an
area code (010/02x + 8 digits, other 0xxx + 7–8; reported as ``025-83345678``), and 7–8
digit local numbers after 电话/号码/打…, wherever the groups were split.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_numerals", "parse_chinese_number", "find_phones"]

_DIGIT = {"零": 0, "〇": 0, "洞": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4,
          "五": 5, "六": 6, "七": 7, "拐": 7, "八": 8, "九": 9, "勾": 9}
# Digits only callers reading out a number use; alone they are ordinary words (拐弯).
_RADIO = set("洞拐勾")
_UNIT = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_NUMERAL = "零〇洞一幺二两三四五六七拐八九勾十百千万0-9"
_SEP = r"[ \t\-—–－杠]"
# A numeral run, possibly split into groups by spaces, dashes or 杠.
_NUMERAL_RUN = re.compile(rf"[{_NUMERAL}]+(?:{_SEP}+[{_NUMERAL}]+)*")
# A lone numeral before these is a quantity or an address part worth converting.
_COUNTERS = "号栋幢楼层单元米弄室"


def parse_chinese_number(text: str) -> int | None:
    """Positional Chinese numerals (十二, 一百零五, 两千三, 三百五) → int; None if not one."""
    if not text or any(c not in _DIGIT and c not in _UNIT for c in text) or any(c in _RADIO for c in text):
        return None
    total, section, digit = 0, 0, None
    last_unit = 10000 * 10
    for c in text:
        if c in _DIGIT:
            digit = _DIGIT[c]
        else:
            unit = _UNIT[c]
            if unit == 10000:
                section = (section + (digit or 0)) * unit
                total += section
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
            last_unit = unit
    if digit is not None:
        # 三百五 means 350: a trailing digit counts in the unit below the last one.
        if text[-2:-1] in _UNIT and last_unit >= 100 and text[-2] not in "零〇":
            digit *= last_unit // 10
        section += digit
    return total + section


def _digits(group: str) -> str:
    return "".join(str(_DIGIT[c]) if c in _DIGIT else c for c in group)


def _convert_run(run: str, after: str) -> str:
    groups = re.split(f"({_SEP}+)", run)
    parts, seps = groups[::2], groups[1::2]
    if len(parts) > 1:
        digit_count = sum(len(p) for p in parts)
        if digit_count >= 3 and not any(c in _UNIT for c in run):
            # A grouped number: every group is digits, however short ("一三八 零零 …").
            out = [_digits(parts[0])]
            for sep, part in zip(seps, parts[1:]):
                out += ["-" if ("-" in sep or "杠" in sep or "—" in sep or "－" in sep) else " ", _digits(part)]
            return "".join(out)
        # Separate words that happen to sit side by side: convert each on its own.
        out = [_convert_run(parts[0], seps[0][:1] if seps else after)]
        for i, (sep, part) in enumerate(zip(seps, parts[1:])):
            nxt = seps[i + 1][:1] if i + 1 < len(seps) else after
            out += [sep, _convert_run(part, nxt)]
        return "".join(out)
    if run.isdigit() and all(c in "0123456789" for c in run):
        return run
    if any(c in _UNIT for c in run):
        # 十字路口, 十分, 千万, 万一 are words: a number starts with a digit or with 十
        # followed by more (十二), or is a lone 十 before a counter (十号).
        if run[0] in _UNIT and (run[0] != "十" or (len(run) == 1 and not (after and after in _COUNTERS))):
            return run
        value = parse_chinese_number(run)
        return str(value) if value is not None else run
    if len(run) >= 3 and sum(c not in _RADIO for c in run) >= 2:
        return _digits(run)
    if after and after in _COUNTERS and not any(c in _RADIO for c in run):
        return _digits(run)
    return run


def normalize_numerals(text: str) -> str:
    """Full-width to half-width (NFKC) and spoken numerals to Arabic digits where they are
    clearly numbers: digit strings of three or more (一三八 → 138, also split into groups),
    positional numbers (二十三 → 23), and a numeral before a counter (三号楼 → 3号楼).
    Short words like 一堆 or 拐弯 stay as they are."""
    text = unicodedata.normalize("NFKC", text or "")
    out: list[str] = []
    pos = 0
    for m in _NUMERAL_RUN.finditer(text):
        out.append(text[pos:m.start()])
        out.append(_convert_run(m.group(), text[m.end():m.end() + 1]))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


_GROUP = re.compile(r"\d+")
_GROUP_SEP = re.compile(r"^[\s\-—–~～·.,，、]*$")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_LOCAL_CUE = re.compile(r"(?:电话|号码|手机|座机|打|拨|联系)[^\d]{0,4}$")


def _landline(digits: str) -> str | None:
    """``0xx…`` as area-local if it is a whole landline number, else None."""
    if not digits.startswith("0") or digits.startswith("00"):
        return None
    area_len = 3 if digits[1] in "12" else 4
    local = digits[area_len:]
    if (area_len == 3 and len(local) == 8) or (area_len == 4 and len(local) in (7, 8)):
        if local[0] not in "01":
            return f"{digits[:area_len]}-{local}"
    return None


def find_phones(normalized: str) -> list[str]:
    """Phone numbers in normalised text (see the module docstring), in order of
    appearance; digit groups split by spaces, dashes or commas are joined as needed."""
    groups = [(m.start(), m.end(), m.group()) for m in _GROUP.finditer(normalized)]
    found: list[str] = []
    i = 0
    while i < len(groups):
        hit = None
        joined = ""
        for j in range(i, len(groups)):
            if j > i and not _GROUP_SEP.match(normalized[groups[j - 1][1]:groups[j][0]]):
                break
            joined += groups[j][2]
            if len(joined) > 12:
                break
            if _MOBILE.fullmatch(joined):
                hit = (j, joined)
                break
            landline = _landline(joined)
            if landline and (len(joined) == 12 or j + 1 >= len(groups)
                             or not _landline(joined + groups[j + 1][2])
                             or not _GROUP_SEP.match(normalized[groups[j][1]:groups[j + 1][0]])):
                hit = (j, landline)
                break
            if (re.fullmatch(r"[2-9]\d{6,7}", joined) and _LOCAL_CUE.search(normalized[:groups[i][0]])
                    and (j + 1 >= len(groups)
                         or not _GROUP_SEP.match(normalized[groups[j][1]:groups[j + 1][0]]))):
                hit = (j, joined)
                break
        if hit:
            if hit[1] not in found:
                found.append(hit[1])
            i = hit[0] + 1
        else:
            i += 1
    return found
