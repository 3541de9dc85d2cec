"""Order fulfilment as a workflow: every feature of hephaestus-django in one readable graph.

hephaestus_django imports this module at start-up (like ``admin.py``), so the workflow is known
before a stored row names it. The graph, read top to bottom::

    ValidateOrder --invalid--> RejectOrder --> Debug --> Rejected
        |valid
        +--> ReserveStock  --+                             (fan-out: both run,
        +--> ChargePayment --+--> PrepareShipment           then join)
                                      |
                                ChooseShipping --express--> BookExpressCourier  --+
                                               --standard-> BookStandardCourier --+--> AwaitShipment
                                                                  (exclusive branches that merge)
    AwaitShipment --shipped--> Wait 2 s --> Route: gold customer? --> ThankGoldCustomer --> Done
                                                  otherwise        --> RequestReview    --> Done
                  --cancelled / timeout (14 days)--> RefundPayment --> Cancelled

``ReserveStock`` and ``ChargePayment`` define ``compensate()``: an order cancelled with
``compensate=True`` (the admin's Cancel operation offers it) is refunded, then its stock released.
``ChargePayment`` raises ``PaymentDeclined`` for a declined card: a step that raises fails the
instance, which records the error's type and message. Steps are deterministic and instant: no
network, no sleeping (the 2-second ``Wait`` is a stored timer, fired by the runner when due).
"""

from __future__ import annotations

import math
from decimal import Decimal

from hephaestus_django import Debug, Done, Event, Route, Step, Wait, WaitForEvent, Workflow

EXPRESS_FROM = Decimal("100.00")
"""Orders of at least this total ship express."""


class PaymentDeclined(Exception):
    """The card issuer refused the charge; raising it fails the instance."""


# --- validation ---------------------------------------------------------------------------------


class ValidateOrder(Step):
    """Accept an order that has items and a positive total."""

    events = ("valid", "invalid")
    step_key = "validation"

    def execute(self, instance, config, context):
        order = context.initial
        if not order.get("items"):
            return Event("invalid", updates={"reason": "the order has no items"})
        if order["total"] <= 0:
            reason = f"the total {order['total']} {order['currency']} is not positive"
            return Event("invalid", updates={"reason": reason})
        return "valid"


class RejectOrder(Step):
    """Tell the customer why their order was refused."""

    events = ("rejected",)

    def execute(self, instance, config, context):
        email = context.initial["customer"]["email"]
        reason = context.result(ValidateOrder)["reason"]
        return Event("rejected", updates={"notified": email, "reason": reason})


class Rejected(Done):
    """The end of an order that failed validation."""


# --- fan-out: stock and payment at once, joined by PrepareShipment ---------------------------


class ReserveStock(Step):
    """Reserve every ordered SKU in the warehouse."""

    events = ("reserved",)
    step_key = "stock"

    def execute(self, instance, config, context):
        items = context.initial["items"]
        return Event(
            "reserved",
            updates={
                "warehouse": "AMS-1",
                "skus": sorted(item["sku"] for item in items),
                "units": sum(item["quantity"] for item in items),
            },
        )

    def compensate(self, instance, config, context):
        """Release the reservation when the order is cancelled with ``compensate=True``. A
        compensation may run twice: releasing a released reservation must be harmless."""


class ChargePayment(Step):
    """Charge the order's total to the customer's card; a declined card fails the order."""

    events = ("charged",)
    step_key = "payment"
    expected_errors = (PaymentDeclined,)  # a business outcome: logged without a traceback

    def execute(self, instance, config, context):
        order = context.initial
        if order["card"] == "declined":
            raise PaymentDeclined(f"card for order {order['order_id']} was declined by the issuer")
        return Event(
            "charged",
            updates={
                "payment_id": f"pay_{instance.id.hex[:12]}",
                "amount": order["total"],  # a Decimal: stored tagged, read back as a Decimal
                "currency": order["currency"],
            },
            metadata={"payment_provider": "demo-pay"},  # merged into runtime_metadata
        )

    def compensate(self, instance, config, context):
        """Refund the charge when the order is cancelled with ``compensate=True``; a real shop
        passes the payment id as the refund's idempotency key, as this may run twice."""


class PrepareShipment(Step):
    """Pack the reserved items once the payment is through (the join of the fan-out)."""

    events = ("packed",)
    step_key = "packing"

    def execute(self, instance, config, context):
        stock = context.result(ReserveStock)
        payment = context.result(ChargePayment)
        return Event(
            "packed",
            updates={"parcels": math.ceil(stock["units"] / 4), "payment_id": payment["payment_id"]},
        )


# --- exclusive branches that merge again at AwaitShipment -------------------------------------


class ChooseShipping(Step):
    """Ship express from EXPRESS_FROM euros, standard below."""

    events = ("express", "standard")

    def execute(self, instance, config, context):
        return "express" if context.initial["total"] >= EXPRESS_FROM else "standard"


class BookExpressCourier(Step):
    """Book a next-day courier."""

    events = ("booked",)
    step_key = "express_booking"

    def execute(self, instance, config, context):
        return Event("booked", updates={"carrier": "DHL Express", "service": "next day"})


class BookStandardCourier(Step):
    """Book the standard parcel service."""

    events = ("booked",)
    step_key = "standard_booking"

    def execute(self, instance, config, context):
        return Event("booked", updates={"carrier": "PostNL", "service": "2-3 days"})


class AwaitShipment(WaitForEvent):
    """Wait for the warehouse to report the parcel shipped, or the order cancelled."""

    # resume(id, "shipped", {"carrier": ..., "tracking": ..., "shipped_at": <datetime>}) or
    # resume(id, "cancelled", {"reason": ...}); the payload becomes context.steps["shipment"].
    # "timeout" is emitted by the runner when nothing arrives in time (see the configure below).
    events = ("shipped", "cancelled", "timeout")
    step_key = "shipment"


class RefundPayment(Step):
    """Refund the charged amount of an order that will not ship."""

    events = ("refunded",)
    step_key = "refund"

    def execute(self, instance, config, context):
        shipment = context.result(AwaitShipment) or {}  # no payload when the timeout fired
        return Event(
            "refunded",
            updates={
                "amount": context.result(ChargePayment)["amount"],
                "reason": shipment.get("reason", "not shipped within 14 days"),
            },
        )


class Cancelled(Done):
    """The end of an order that was cancelled or never shipped."""


# --- after delivery: a dynamic route on the customer's tier ------------------------------------


class ThankGoldCustomer(Step):
    """Send a gold customer a thank-you voucher."""

    events = ("sent",)

    def execute(self, instance, config, context):
        order = context.initial
        return Event(
            "sent", updates={"voucher": f"THANKS-{order['order_id']}", "value": Decimal(10)}
        )


class RequestReview(Step):
    """Ask the customer to review what they bought."""

    events = ("requested",)

    def execute(self, instance, config, context):
        return Event("requested", updates={"sent_to": context.initial["customer"]["email"]})


def follow_up(context):
    """Gold customers get a thank-you voucher, everyone else a review request."""
    if context.initial["customer"]["tier"] == "gold":
        return ThankGoldCustomer
    return RequestReview


# --- the workflow ------------------------------------------------------------------------------

# A stored timer: days in a real shop, two seconds here so the demo can watch it fire.
DELIVERY_WINDOW = Wait.configure(duration=2, unit="seconds")
# Give up on a shipment after 14 days: AwaitShipment then emits "timeout".
AWAIT_SHIPMENT = AwaitShipment.configure(timeout={"duration": 14, "unit": "days"})


class OrderFulfilment(Workflow):
    """From a placed order to a delivered parcel, a refund or a rejection."""

    version = 2  # 2: express shipping; stored with every new instance
    start_step = ValidateOrder
    transitions = {
        ValidateOrder: {"valid": [ReserveStock, ChargePayment], "invalid": RejectOrder},
        RejectOrder: {"rejected": Debug},  # Debug logs the context (logger hephaestus_django.debug)
        Debug: {"continue": Rejected},
        ReserveStock: {"reserved": PrepareShipment},
        ChargePayment: {"charged": PrepareShipment},
        PrepareShipment: {"packed": ChooseShipping},
        ChooseShipping: {"express": BookExpressCourier, "standard": BookStandardCourier},
        BookExpressCourier: {"booked": AWAIT_SHIPMENT},
        BookStandardCourier: {"booked": AWAIT_SHIPMENT},
        AwaitShipment: {
            "shipped": DELIVERY_WINDOW,
            "cancelled": RefundPayment,
            "timeout": RefundPayment,
        },
        Wait: {"timeout": Route(follow_up, [ThankGoldCustomer, RequestReview])},
        ThankGoldCustomer: {"sent": Done},
        RequestReview: {"requested": Done},
        RefundPayment: {"refunded": Cancelled},
    }
