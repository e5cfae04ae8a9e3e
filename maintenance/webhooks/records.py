"""The bases of event payload models (see ``catalog``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """Base of every event payload: extra fields are allowed (additive changes stay v1)."""

    model_config = ConfigDict(extra="allow")


class Record(BaseModel):
    """A business record embedded in a payload; only its stable fields are listed."""

    model_config = ConfigDict(extra="allow")
