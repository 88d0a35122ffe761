"""One module per destination kind, each behind the interface in :mod:`.base`; :func:`build`
makes the destination instance an entry of include/destinations.yml describes.

Kinds and their classes (imported only when built, so a missing or broken module does not stop
the others, nor the DAG files, from loading):

=====================  ============================================
kind                   class
=====================  ============================================
``s3_file``            :class:`.files.S3FileDestination`
``sftp_dm_list``       :class:`.files.SftpFileDestination`
``sftp_insert_list``   :class:`.files.SftpFileDestination`
``smtp_email``         :class:`.email.SmtpEmailDestination`
``esp_list``           :class:`.email.EspListDestination`
``line_multicast``     :class:`.line.LineMulticastDestination`
``line_audience``      :class:`.line.LineAudienceDestination`
``sms``                :class:`.sms.SmsDestination`
=====================  ============================================
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from .base import Destination

KINDS: dict[str, tuple[str, str]] = {
    "s3_file": ("files", "S3FileDestination"),
    "sftp_dm_list": ("files", "SftpFileDestination"),
    "sftp_insert_list": ("files", "SftpFileDestination"),
    "smtp_email": ("email", "SmtpEmailDestination"),
    "esp_list": ("email", "EspListDestination"),
    "line_multicast": ("line", "LineMulticastDestination"),
    "line_audience": ("line", "LineAudienceDestination"),
    "sms": ("sms", "SmsDestination"),
}
# Configuration keys that describe the entry rather than configure the class.
NOT_FOR_THE_CLASS = frozenset({"kind", "description", "raw_contact_allowed", "test_recipients"})


class DestinationBuildError(ValueError):
    """The configuration cannot make a destination (unknown kind, an option the class lacks)."""


def destination_class(kind: str) -> type[Destination]:
    """The class of `kind`, imported now."""
    if kind not in KINDS:
        raise DestinationBuildError(f"unknown destination kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    module_name, class_name = KINDS[kind]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as e:
        raise DestinationBuildError(
            f"kind {kind!r} needs {__name__}.{module_name}.{class_name}, which cannot be imported: {e}"
        ) from e
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise DestinationBuildError(f"{module.__name__} has no class {class_name} (kind {kind!r})") from None


def build(config: Mapping[str, Any]) -> Destination:
    """A destination from one entry of include/destinations.yml (plus, for one audience, its
    `templates` and `options`). `key_field` is passed when the class takes it, else set on the
    instance (the 同梱物 list is keyed by order_id). Every other key is passed to the class as a keyword argument;
    an option the class does not take is an error, never silently dropped. `channel` is checked
    against the class's own when the class does not take it."""
    kind = str(config.get("kind", ""))
    cls = destination_class(kind)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    unknown = []
    for key, value in config.items():
        if key in NOT_FOR_THE_CLASS and not (key == "kind" and key in params):
            continue
        if takes_any or key in params:
            kwargs[key] = value
        elif key == "channel":
            fixed = getattr(cls, "channel", None)
            if fixed is not None and not isinstance(fixed, property) and fixed != value:
                raise DestinationBuildError(
                    f"destination {config.get('name')}: {cls.__name__} sends on {fixed!r}, configured channel {value!r}"
                )
        elif key == "conn_id" and value is None:
            continue
        elif key == "key_field":
            continue  # set on the instance below
        else:
            unknown.append(key)
    if unknown:
        raise DestinationBuildError(
            f"destination {config.get('name')} (kind {kind}): {cls.__name__} takes no option(s) {sorted(unknown)}"
        )
    destination = cls(**kwargs)
    if "key_field" in config and "key_field" not in kwargs:
        destination.key_field = str(config["key_field"])  # e.g. order_id for the 同梱物 list
    if "channel" in config and getattr(destination, "channel", config["channel"]) != config["channel"]:
        raise DestinationBuildError(
            f"destination {config.get('name')}: built on channel {destination.channel!r}, "
            f"configured {config['channel']!r}"
        )
    return destination


__all__ = ["KINDS", "DestinationBuildError", "build", "destination_class"]
