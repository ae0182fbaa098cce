"""Rules: validation, the output-topic template, conversion to and from the API.

A rule (:class:`~linewatch_ingest.config.RuleConfig`) maps a source topic filter to a
model and an output topic template. Placeholders in the template:

- ``{device_id}``, ``{point}``: from the payload;
- ``{1}``, ``{2}`` …: the topic levels the filter's wildcards matched, in order (``+``
  matches one level; ``#`` contributes every remaining level). For
  ``plant/+/+/telemetry`` and ``plant/A/press-07/telemetry``, ``{1}`` is ``A`` and
  ``{2}`` is ``press-07``. A ``$share/<group>/`` prefix is not a level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from linewatch.runtime.errors import InvalidArgument
from linewatch.v1 import ingest_pb2
from linewatch_ingest.config import (
    ENVELOPE,
    AlarmCommandConfig,
    AlarmRuleConfig,
    ModelParams,
    MonitorWindow,
    RuleConfig,
)

__all__ = [
    "TopicTemplate",
    "check_loops",
    "filters_overlap",
    "params_from_proto",
    "params_to_proto",
    "rule_from_proto",
    "rule_to_proto",
    "strip_share",
    "validate_rule",
    "window_to_proto",
]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def strip_share(topic_filter: str) -> str:
    """The filter without a ``$share/<group>/`` prefix."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[2]
    return topic_filter


def _check_filter(topic_filter: str) -> list[str]:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or any(c in parts[1] for c in "+#"):
            raise InvalidArgument(f"source_topic {topic_filter!r}: bad $share/<group>/ prefix")
    levels = strip_share(topic_filter).split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise InvalidArgument(f"source_topic {topic_filter!r}: '#' must be the last level")
        if level not in {"+", "#"} and ("+" in level or "#" in level):
            raise InvalidArgument(f"source_topic {topic_filter!r}: wildcards must fill a level")
    return levels


_RENDER_CACHE = 100_000


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A compiled output-topic template for one source filter."""

    template: str
    filter_levels: tuple[str, ...]
    _rendered: dict[str | tuple[str, str, str], str] = field(
        default_factory=dict, compare=False, repr=False
    )
    _by_device: bool = field(default=False, compare=False, repr=False)
    """The template reads ``{device_id}`` alone: the memo is keyed on it (a string, its
    hash kept) instead of ``(topic, device_id, point)``."""

    @classmethod
    def compile(cls, template: str, source_filter: str) -> TopicTemplate:
        """Check the template against the filter.

        Raises:
            InvalidArgument: an unknown placeholder, a level index the filter cannot
                provide, or wildcards in the template.
        """
        levels = _check_filter(source_filter)
        if not template or "+" in template or "#" in template:
            raise InvalidArgument(f"output_topic {template!r}: must be a topic without wildcards")
        plus = levels.count("+")
        has_hash = levels[-1] == "#"
        for name in _PLACEHOLDER.findall(template):
            if name in {"device_id", "point"}:
                continue
            if not name.isdigit() or int(name) < 1:
                raise InvalidArgument(f"output_topic {template!r}: unknown placeholder {{{name}}}")
            if int(name) > plus and not has_hash:
                raise InvalidArgument(
                    f"output_topic {template!r}: {{{name}}} but the filter has {plus} wildcard(s)"
                )
        by_device = set(_PLACEHOLDER.findall(template)) == {"device_id"}
        return cls(template, tuple(levels), _by_device=by_device)

    def captures(self, topic: str) -> list[str]:
        """The topic levels the filter's wildcards matched."""
        tlevels = topic.split("/")
        out: list[str] = []
        for i, flevel in enumerate(self.filter_levels):
            if flevel == "#":
                out.extend(tlevels[i:])
                break
            if flevel == "+" and i < len(tlevels):
                out.append(tlevels[i])
        return out

    def render(self, topic: str, *, device_id: str, point: str) -> str:
        """The output topic for one message received on ``topic`` (memoised: a plant has
        a bounded set of device/point topics, and this runs for every message)."""
        if "{" not in self.template:
            return self.template
        key = device_id if self._by_device else (topic, device_id, point)
        out = self._rendered.get(key)
        if out is None:
            if len(self._rendered) >= _RENDER_CACHE:
                self._rendered.clear()
            out = self._rendered[key] = self._render(topic, device_id, point)
        return out

    def _render(self, topic: str, device_id: str, point: str) -> str:
        caps = self.captures(topic)

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "device_id":
                return device_id
            if name == "point":
                return point
            index = int(name) - 1
            return caps[index] if index < len(caps) else ""

        return _PLACEHOLDER.sub(sub, self.template)


OWN_TOPICS = "linewatch/#"
"""linewatch's own topics (dead letters, …): no rule may consume them."""


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both topic filters (``+``, ``#``; a ``$share/<group>/``
    prefix is not a level; in ``b`` a level holding a placeholder such as ``{device_id}``,
    ``{point}`` or ``{1}`` stands for any single level, as in an output-topic template)."""
    la = strip_share(a).split("/")
    lb = [("+" if "{" in level else level) for level in strip_share(b).split("/")]
    if la[0].startswith("$") != lb[0].startswith("$") and (
        la[0] in {"+", "#"} or lb[0] in {"+", "#"}
    ):
        return False  # a wildcard first level never matches a $ topic
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x == "#" or y == "#":
            return True  # '#' also matches its parent level
        if x is None or y is None:
            return False
        if "+" not in (x, y) and x != y:
            return False
    return True


def check_loops(rule: RuleConfig, deadletter_topic: str = "linewatch/deadletter") -> None:
    """Refuse a rule that would consume linewatch's own messages or its own output.

    Raises:
        InvalidArgument: the source filter can match ``linewatch/...``, the dead-letter
            topic, or the rule's own output topic.
    """
    source = rule.source_topic
    for own in filter(None, (OWN_TOPICS, deadletter_topic)):
        if filters_overlap(source, own):
            raise InvalidArgument(
                f"rule {rule.name!r}: source_topic {source!r} can match {own!r} "
                "(linewatch's own messages; it would consume them in a loop)"
            )
    if filters_overlap(source, rule.output_topic):
        raise InvalidArgument(
            f"rule {rule.name!r}: source_topic {source!r} can match its own output_topic "
            f"{rule.output_topic!r} (it would consume its own verdicts in a loop)"
        )


def validate_rule(
    rule: RuleConfig,
    brokers: set[str],
    targets: set[str] | None = None,
    *,
    deadletter_topic: str = "linewatch/deadletter",
) -> TopicTemplate:
    """Check a rule against the configured brokers; returns its compiled template.

    Raises:
        InvalidArgument: the rule cannot work (unknown broker, bad filter or template) or
            would loop (:func:`check_loops`).
    """
    if rule.broker not in brokers:
        raise InvalidArgument(
            f"rule {rule.name!r}: no broker named {rule.broker!r} (known: {sorted(brokers)})"
        )
    if (
        rule.alarm.threshold
        and rule.alarm.webhook_format == "feishu"
        and not rule.alarm.webhook_url
    ):
        raise InvalidArgument(f"rule {rule.name!r}: a feishu alarm needs webhook_url")
    hook = rule.alarm.escalate_webhook_url or rule.alarm.webhook_url
    if rule.alarm.escalate_after_s and not hook:
        raise InvalidArgument(f"rule {rule.name!r}: escalate_after_s needs a webhook URL")
    if rule.target and targets is not None and rule.target not in targets:
        raise InvalidArgument(
            f"rule {rule.name!r}: no inference target named {rule.target!r} "
            f"(known: {sorted(targets)})"
        )
    if rule.model_params.windows and rule.model != ENVELOPE:
        raise InvalidArgument(
            f"rule {rule.name!r}: model_params.windows are judged by the built-in "
            f"{ENVELOPE!r} model only"
        )
    template = TopicTemplate.compile(rule.output_topic, rule.source_topic)
    check_loops(rule, deadletter_topic)
    return template


_MODES = {"pass": ingest_pb2.WINDOW_MODE_PASS, "avoid": ingest_pb2.WINDOW_MODE_AVOID}
_SIDES = {
    "any": ingest_pb2.WINDOW_SIDE_ANY,
    "left": ingest_pb2.WINDOW_SIDE_LEFT,
    "right": ingest_pb2.WINDOW_SIDE_RIGHT,
    "top": ingest_pb2.WINDOW_SIDE_TOP,
    "bottom": ingest_pb2.WINDOW_SIDE_BOTTOM,
}
_AXES = {"fraction": ingest_pb2.WINDOW_AXIS_FRACTION, "index": ingest_pb2.WINDOW_AXIS_INDEX}


def window_to_proto(w: MonitorWindow) -> ingest_pb2.MonitorWindow:
    """The API form of a monitoring window."""
    return ingest_pb2.MonitorWindow(
        name=w.name,
        x_axis=_AXES[w.x_axis],
        x_min=w.x_min,
        x_max=w.x_max,
        y_min=w.y_min,
        y_max=w.y_max,
        mode=_MODES[w.mode],
        enter=_SIDES[w.enter],
        exit=_SIDES[w.exit],
    )


def params_to_proto(p: ModelParams) -> ingest_pb2.ModelParams:
    """The API form of a rule's model parameters."""
    return ingest_pb2.ModelParams(
        teach_in=p.teach_in,
        width=p.width,
        length=p.length,
        max_shift=p.max_shift,
        windows=[window_to_proto(w) for w in p.windows],
    )


def _name(table: Mapping[str, int], number: int, default: str) -> str:
    for name, value in table.items():
        if value == number:
            return name
    return default


def params_from_proto(msg: ingest_pb2.ModelParams) -> dict[str, object]:
    """Model parameters from the API (0 / unset: the default), to validate."""
    defaults = ModelParams()
    return {
        "teach_in": msg.teach_in or defaults.teach_in,
        "width": msg.width or defaults.width,
        "length": msg.length or defaults.length,
        "max_shift": msg.max_shift if msg.max_shift else defaults.max_shift,
        "windows": [
            {
                "name": w.name,
                "x_axis": _name(_AXES, w.x_axis, "fraction"),
                "x_min": w.x_min,
                "x_max": w.x_max,
                "y_min": w.y_min,
                "y_max": w.y_max,
                "mode": _name(_MODES, w.mode, "pass"),
                "enter": _name(_SIDES, w.enter, "left"),
                "exit": _name(_SIDES, w.exit, "right"),
            }
            for w in msg.windows
        ],
    }


def _command_to_proto(cmd: AlarmCommandConfig | None) -> ingest_pb2.AlarmCommand | None:
    if cmd is None:
        return None
    return ingest_pb2.AlarmCommand(
        name=cmd.name,
        params_json=json.dumps(cmd.params, separators=(",", ":")),
        devices=list(cmd.devices),
        timeout_s=cmd.timeout_s,
        expires_s=cmd.expires_s,
    )


def _command_from_proto(alarm: ingest_pb2.AlarmRule, which: str) -> dict[str, object] | None:
    if not alarm.HasField(which):
        return None
    cmd = getattr(alarm, which)
    try:
        params = json.loads(cmd.params_json) if cmd.params_json else {}
    except (RecursionError, ValueError) as exc:
        raise InvalidArgument(f"rule.alarm.{which}.params_json: not JSON") from exc
    if not isinstance(params, dict):
        raise InvalidArgument(f"rule.alarm.{which}.params_json: must be a JSON object")
    return {
        "name": cmd.name,
        "params": params,
        "devices": tuple(cmd.devices),
        "timeout_s": cmd.timeout_s,
        "expires_s": cmd.expires_s,
    }


_LIFECYCLE = {
    "severity", "no_data_s", "deadletter_threshold", "deadletter_window_s", "escalate_after_s",
    "escalate_webhook_url", "escalate_webhook_format", "escalate_webhook_secret",
}  # fmt: skip
"""Alarm fields with the same name and meaning in the config and the proto."""


def rule_to_proto(rule: RuleConfig) -> ingest_pb2.Rule:
    """The API form of a rule."""
    alarm = rule.alarm
    return ingest_pb2.Rule(
        name=rule.name,
        broker=rule.broker,
        source_topic=rule.source_topic,
        model=rule.model,
        model_version=rule.model_version,
        output_topic=rule.output_topic,
        qos=rule.qos,
        archive=rule.archive,
        alarm=ingest_pb2.AlarmRule(
            threshold=alarm.threshold,
            window_s=alarm.window_s,
            webhook_url=alarm.webhook_url,
            webhook_format=alarm.webhook_format,
            webhook_secret=alarm.webhook_secret,
            on_raise=_command_to_proto(alarm.on_raise),
            on_clear=_command_to_proto(alarm.on_clear),
            command_cooldown_s=alarm.command_cooldown_s,
            **alarm.model_dump(include=_LIFECYCLE),
        ),
        enabled=rule.enabled,
        model_params=params_to_proto(rule.model_params),
        target=rule.target,
    )


def _params(msg: ingest_pb2.Rule) -> ModelParams:
    if not msg.HasField("model_params"):
        return ModelParams()
    try:
        return ModelParams.model_validate(params_from_proto(msg.model_params))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        where = f"rule.model_params.{key}" if key else "rule.model_params"
        raise InvalidArgument(f"{where}: {err['msg']}") from exc


def rule_from_proto(msg: ingest_pb2.Rule) -> RuleConfig:
    """A rule from the API, validated.

    Raises:
        InvalidArgument: a field is missing or out of range (the message names it).
    """
    alarm: dict[str, object] = {}
    if msg.HasField("alarm"):
        alarm = {
            "threshold": msg.alarm.threshold,
            "window_s": msg.alarm.window_s or 60,
            "webhook_url": msg.alarm.webhook_url,
            "webhook_format": msg.alarm.webhook_format or "generic",
            "webhook_secret": msg.alarm.webhook_secret,
            "on_raise": _command_from_proto(msg.alarm, "on_raise"),
            "on_clear": _command_from_proto(msg.alarm, "on_clear"),
            "command_cooldown_s": msg.alarm.command_cooldown_s,
            **{name: getattr(msg.alarm, name) for name in _LIFECYCLE},
            "severity": msg.alarm.severity or "warning",
            "deadletter_window_s": msg.alarm.deadletter_window_s or 60,
        }
    try:
        return RuleConfig(
            name=msg.name,
            broker=msg.broker or "default",
            source_topic=msg.source_topic,
            model=msg.model,
            model_version=msg.model_version,
            output_topic=msg.output_topic,
            qos=msg.qos,
            archive=msg.archive,
            alarm=AlarmRuleConfig.model_validate(alarm),
            enabled=msg.enabled,
            model_params=_params(msg),
            target=msg.target,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "rule"
        raise InvalidArgument(f"rule.{key}: {err['msg']}") from exc
