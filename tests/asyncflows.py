"""A workflow whose steps are ``async def``, and the async view that starts and resumes it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, JsonResponse

from hephaestus_django import Context, Done, Event, Instance, Step, WaitForEvent, Workflow

UNDONE: list[str] = []
"""The instances whose async compensation ran."""


class FetchQuote(Step):
    """Awaits, as a step calling an async HTTP client would."""

    events = ("quoted",)

    async def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> Event:
        await asyncio.sleep(0)
        return Event("quoted", updates={"price": context.initial.get("amount", 0) * 2})

    async def compensate(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> None:
        await asyncio.sleep(0)
        UNDONE.append(str(instance.id))


class AwaitAcceptance(WaitForEvent):
    events = ("accepted",)


class Quotation(Workflow):
    start_step = FetchQuote
    transitions = {FetchQuote: {"quoted": AwaitAcceptance}, AwaitAcceptance: {"accepted": Done}}


async def quotation_view(request: HttpRequest) -> JsonResponse:
    """Start a quotation under the posted key, or accept it: what an async view does."""
    key = request.POST["key"]
    if request.POST.get("accept"):
        instance = await Quotation.aresume(key=key, event="accepted")
    else:
        instance_id = await Quotation.astart({"amount": int(request.POST["amount"])}, key=key)
        instance = await Quotation.aget(instance_id)
    return JsonResponse(
        {
            "id": str(instance.id),
            "status": instance.status.value,
            "price": instance.context.result(FetchQuote, {}).get("price"),
        }
    )
