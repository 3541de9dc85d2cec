"""A versioned workflow for the tests of versions, upgrades and tags: onboarding, v1 and v2.

Version 2 renames the welcome step (``SendWelcome`` -> ``SendWelcomeEmail``), adds an
``Activate`` step after the verification, and drops v1's ``LegacyCheck`` (a step v1 runs
after the welcome, which v2 no longer needs). Its upgrade from v1 maps the steps
and moves the customer's e-mail address under ``contact`` in the initial context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django import (
    Done,
    Event,
    Step,
    Upgrade,
    VersionedWorkflow,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.core.instance import Context, Instance


class SendWelcome(Step):
    events = ("sent",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event("sent", updates={"to": context.initial.get("email")})


class SendWelcomeEmail(Step):
    events = ("sent",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event("sent", updates={"to": context.initial.get("contact", {}).get("email")})


class LegacyCheck(Step):
    events = ("checked",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        if context.initial.get("legacy_down"):
            raise RuntimeError("the legacy system is down")
        return "checked"


class AwaitVerification(WaitForEvent):
    events = ("verified",)


class Activate(Step):
    events = ("activated",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "activated"


class OnboardingV1(Workflow):
    version = 1
    tags = ("customers",)
    start_step = SendWelcome
    transitions = {
        SendWelcome: {"sent": LegacyCheck},
        LegacyCheck: {"checked": AwaitVerification},
        AwaitVerification: {"verified": Done},
    }


class OnboardingV2(Workflow):
    version = 2
    tags = ("customers", "eu")
    upgrade_from = Upgrade(
        OnboardingV1,
        steps={SendWelcome: SendWelcomeEmail, LegacyCheck: None},
        context=lambda initial: {**initial, "contact": {"email": initial.get("email")}},
    )
    start_step = SendWelcomeEmail
    transitions = {
        SendWelcomeEmail: {"sent": AwaitVerification},
        AwaitVerification: {"verified": Activate},
        Activate: {"activated": Done},
    }


class Onboarding(VersionedWorkflow):
    versions = (OnboardingV1, OnboardingV2)
    current = 2


class Newsletter(Workflow):
    """A plain workflow, for contrast."""

    tags = ("marketing",)
    start_step = AwaitVerification
    transitions = {AwaitVerification: {"verified": Done}}
