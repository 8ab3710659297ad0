"""SMS texts (zh-CN jinja2 templates), one per case event, editable by the city.

The shipped templates live in `callcenter/notify/templates/<name>.j2`; a city puts its own
`<name>.j2` in `[sms] templates_dir` to replace one. Templates run in a sandbox with strict
variables, so a typo in a variable name is an error when the template is checked or saved,
never a half-empty SMS to a citizen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from callcenter.notify.encoding import layout

__all__ = [
    "SHIPPED_DIR", "TEMPLATE_NAMES", "EVENT_TEMPLATES", "SAMPLE_CONTEXT",
    "TemplateProblem", "TemplateError", "SmsTemplates", "check_source",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "templates"

# Variables each template may use; the check renders it with these sample values.
_COMMON = {"signature": "【12319城建服务热线】", "hotline": "12319", "case_number": "20260315-0042"}
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "accepted": dict(_COMMON),
    "registered": dict(_COMMON),
    "declined": {**_COMMON, "reason": "不属于城市管理职责范围，已告知向物业反映"},
    "closed": {**_COMMON, "result": "破损井盖已于3月16日更换"},
    "follow_up": dict(_COMMON),
}
TEMPLATE_NAMES = tuple(SAMPLE_CONTEXT)

# Case events (case_core.domain.workflow.CaseEvent.name) that text the reporter.
EVENT_TEMPLATES = {
    "CaseAccepted": "accepted",
    "CaseRegistered": "registered",
    "CaseDeclined": "declined",
    "CaseClosed": "closed",
    "FollowUpInvited": "follow_up",
}


@dataclass(frozen=True)
class TemplateProblem:
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TemplateError(ValueError):
    """A template cannot be rendered (unknown name, syntax error, undefined variable)."""


def _environment(loader: jinja2.BaseLoader | None = None) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=loader, undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"第 {exc.lineno} 行语法错误（syntax error）：{exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"未知变量：{exc.message}"
    return f"模板无法渲染（{type(exc).__name__}: {exc}）"


def check_source(name: str, source: str, *, max_parts: int = 6) -> str | None:
    """The problem with a template text, or None if it renders a usable SMS."""
    if name not in SAMPLE_CONTEXT:
        return f"没有名为 {name!r} 的短信模板（可用：{', '.join(TEMPLATE_NAMES)}）"
    try:
        text = _environment().from_string(source).render(**SAMPLE_CONTEXT[name]).strip()
    except jinja2.TemplateError as exc:
        return _describe(exc)
    except Exception as exc:  # sandbox violations, bad filters at render time
        return _describe(exc)
    if not text:
        return "渲染结果为空"
    parts = layout(text).count
    if parts > max_parts:
        return f"太长（too long）：用示例值渲染需 {parts} 条短信，最多 {max_parts} 条"
    return None


class SmsTemplates:
    """The shipped templates, each replaced by the city's file of the same name if present."""

    def __init__(self, override_dir: Path | None = None, *, max_parts: int = 6) -> None:
        self.override_dir = override_dir
        self.max_parts = max_parts
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(SHIPPED_DIR))]
        if override_dir is not None:
            loaders.insert(0, jinja2.FileSystemLoader(str(override_dir)))
        self._env = _environment(jinja2.ChoiceLoader(loaders))

    def path_of(self, name: str) -> Path:
        if self.override_dir is not None and (self.override_dir / f"{name}.j2").is_file():
            return self.override_dir / f"{name}.j2"
        return SHIPPED_DIR / f"{name}.j2"

    def source(self, name: str) -> str:
        if name not in SAMPLE_CONTEXT:
            raise TemplateError(f"没有名为 {name!r} 的短信模板（可用：{', '.join(TEMPLATE_NAMES)}）")
        return self.path_of(name).read_text(encoding="utf-8")

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The SMS text for `name`; raises TemplateError naming the file and the problem."""
        if name not in SAMPLE_CONTEXT:
            raise TemplateError(f"没有名为 {name!r} 的短信模板（可用：{', '.join(TEMPLATE_NAMES)}）")
        try:
            return self._env.get_template(f"{name}.j2").render(**context).strip()
        except Exception as exc:
            raise TemplateError(f"{self.path_of(name)}: {_describe(exc)}") from None

    def check(self) -> list[TemplateProblem]:
        """Every problem with the templates in use, including stray files in the city's folder."""
        problems: list[TemplateProblem] = []
        if self.override_dir is not None:
            if not self.override_dir.is_dir():
                return [TemplateProblem("", str(self.override_dir), "templates folder does not exist")]
            for path in sorted(self.override_dir.glob("*.j2")):
                if path.stem not in SAMPLE_CONTEXT:
                    problems.append(TemplateProblem(
                        path.stem, str(path), f"not a known template (known: {', '.join(TEMPLATE_NAMES)})"))
        for name in TEMPLATE_NAMES:
            path = self.path_of(name)
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(TemplateProblem(name, str(path), f"cannot read: {exc}"))
                continue
            problem = check_source(name, source, max_parts=self.max_parts)
            if problem:
                problems.append(TemplateProblem(name, str(path), problem))
        return problems

    def save(self, name: str, source: str) -> None:
        """Store the city's version of `name` after checking it; raises TemplateError if broken."""
        if self.override_dir is None:
            raise TemplateError("未配置模板目录：请设置 [sms] templates_dir")
        problem = check_source(name, source, max_parts=self.max_parts)
        if problem:
            raise TemplateError(f"{name}: {problem}")
        self.override_dir.mkdir(parents=True, exist_ok=True)
        target = self.override_dir / f"{name}.j2"
        tmp = target.with_suffix(".j2.tmp")
        tmp.write_text(source, encoding="utf-8")
        tmp.replace(target)
