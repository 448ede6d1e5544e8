"""Deterministic generator for evalwatch's bundled synthetic data in ``datasets/``.

Running ``python scripts/generate_sample_data.py`` rewrites, byte for byte, every generated file:

- ``sample_traffic.jsonl``: 14 days of logged LLM traffic, with a deliberate shift in the last 3
  days.
- ``support-qa.jsonl``: a sliced test set with references.
- ``support-qa.predictions.{baseline,candidate-equivalent,candidate-degraded}.jsonl``: model outputs
  for every test-set item (the degraded model is wrong or truncated in the ``billing`` slice only).
- ``human_labels.jsonl``: human 1-5 scores for judge calibration.

``datasets/README.md`` documents the schemas and exactly what was injected where. Benchmarks import
:func:`generate_traffic` to make large synthetic traffic quickly.

Only the standard library and numpy are used, so the output does not depend on anything else.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SEED = 20261103
SAMPLE_START = datetime(2026, 11, 1, tzinfo=UTC)
SAMPLE_DAYS = 14
SAMPLE_SHIFT_DAYS = 3
SAMPLE_ROWS = 5000
TEST_SET_ITEMS_PER_TOPIC = 50
HUMAN_LABEL_ROWS = 130
MODEL_NAME = "acme-chat"
DEGRADED_SLICE = "billing"

# Rates of the stationary (shift-free) period. The README documents these numbers; keep in sync.
JSON_RATE = 0.05
REFUSAL_RATE = 0.032
SHIFT_REFUSAL_RATE = 0.05
TOXIC_RATE = 0.01
INVALID_JSON_RATE = 0.15
CANARY_INVALID_JSON_RATE = 0.35
CANARY_LATENCY_FACTOR = 1.35
CRYPTO_SHARE = 0.158
PII_RESPONSE_RATE = 0.012
PII_PROMPT_RATE = 0.02
CARD_PROMPT_RATE = 0.003
IP_PROMPT_RATE = 0.002
API_KEY_PROMPT_RATE = 0.001
MISSING_REQUEST_ID_RATE = 0.02
RATING_RATE = 0.30
THUMBS_RATE = 0.15
PRICE_INPUT_PER_TOKEN = 0.60e-6
PRICE_OUTPUT_PER_TOKEN = 2.40e-6
SYSTEM_PROMPT_TOKENS = {"support-bot": 212, "sales-assistant": 168}

TOPICS = ("billing", "shipping", "returns", "account", "product")
NEW_TOPIC = "crypto"
APP_SHARES = {"support-bot": 0.7, "sales-assistant": 0.3}
APP_TOPIC_SHARES: dict[str, dict[str, float]] = {
    "support-bot": {
        "billing": 0.25,
        "shipping": 0.25,
        "returns": 0.20,
        "account": 0.20,
        "product": 0.10,
    },
    "sales-assistant": {"product": 0.60, "billing": 0.20, "shipping": 0.20},
}
CHANNELS: dict[str, dict[str, float]] = {
    "support-bot": {"web": 0.6, "mobile": 0.3, "email": 0.1},
    "sales-assistant": {"web": 0.8, "mobile": 0.2},
}
TURNS_PER_SESSION = (1, 2, 3, 4)
TURN_WEIGHTS = (0.65, 0.22, 0.09, 0.04)


@dataclass(frozen=True)
class Product:
    """A catalogue item used to fill product slots."""

    name: str
    category: str
    price: int
    summary: str
    colors: tuple[str, ...]
    compat: str
    water: str
    care_price: int


@dataclass(frozen=True)
class Plan:
    """A subscription plan used to fill plan slots."""

    name: str
    monthly: str
    yearly: str
    perks: str


@dataclass(frozen=True)
class Intent:
    """One kind of user request: prompts, paraphrased answers sharing the same facts, and a KB text.

    ``answers[0]`` is the reference wording of the test set; the other answers say the same facts in
    other words. ``wrong`` answers state wrong facts (used for the degraded model and for low human
    scores). Templates only use slots present in every prompt, or derived from those (see
    ``DERIVED_SLOTS``), or "lookup" slots an assistant would know (``carrier``).
    """

    name: str
    topic: str
    tag: str
    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    details: tuple[str, ...]
    kb: str
    wrong: tuple[str, ...] = ()
    refusal_rate: float | None = None
    weight: float = 1.0


PRODUCTS: tuple[Product, ...] = (
    Product(
        "Acme Nimbus 2 wireless earbuds",
        "pair of earbuds",
        129,
        "offers active noise cancellation and 8 hours of playback, or 32 hours with the "
        "charging case",
        ("black", "white", "sage green"),
        "pairs over Bluetooth 5.3 with iPhone, Android phones, Windows PCs and Macs",
        "IPX4 splash resistant, so sweat and rain are fine, but it should not be submerged",
        29,
    ),
    Product(
        "Acme Vista 14 laptop",
        "laptop",
        1099,
        "has a 14-inch 2.8K display, 16 GB of RAM, a 512 GB SSD and up to 15 hours of battery life",
        ("silver", "graphite"),
        "runs Windows 11 and links to iPhone and Android phones through the Acme Link app",
        "not water resistant, so keep drinks away from the keyboard",
        149,
    ),
    Product(
        "Acme Pulse 3 smartwatch",
        "smartwatch",
        249,
        "tracks heart rate, sleep and GPS workouts and lasts up to 7 days on a charge",
        ("black", "rose gold", "navy"),
        "syncs with the Acme Health app on iPhone and Android",
        "water resistant to 50 meters, so you can swim with it",
        39,
    ),
    Product(
        "Acme Breeze air purifier",
        "air purifier",
        199,
        "uses a true HEPA H13 filter, cleans rooms up to 500 square feet and runs at 24 dB in "
        "sleep mode",
        ("white", "charcoal"),
        "works on its own and can be scheduled from the Acme Home app on iPhone and Android",
        "not water resistant, so place it away from sinks and humidifiers",
        29,
    ),
    Product(
        "Acme Halo smart speaker",
        "smart speaker",
        89,
        "has a built-in voice assistant, 360-degree sound and multi-room audio",
        ("chalk", "charcoal", "coral"),
        "streams from iPhone, Android, Spotify Connect and AirPlay 2",
        "splash resistant on top but not waterproof",
        19,
    ),
    Product(
        "Acme Drift robot vacuum",
        "robot vacuum",
        349,
        "maps your home with lidar, runs for 120 minutes per charge and empties itself into "
        "an optional base",
        ("black", "white"),
        "is controlled from the Acme Home app on iPhone and Android and works with Halo speakers",
        "not water resistant and should not be used on wet floors",
        49,
    ),
    Product(
        "Acme Lumen desk lamp",
        "desk lamp",
        59,
        "adjusts its color temperature from 2700K to 6500K and has a USB-C charging port in "
        "the base",
        ("white", "black", "oak"),
        "works with any USB-C phone charger and does not need an app",
        "not water resistant",
        9,
    ),
    Product(
        "Acme Glide electric toothbrush",
        "electric toothbrush",
        79,
        "has three cleaning modes, a two-minute timer and a battery that lasts 30 days",
        ("white", "mint", "black"),
        "needs no app, although it can log brushing sessions in the Acme Health app",
        "fully waterproof and safe to use in the shower",
        9,
    ),
    Product(
        "Acme Frame 27 monitor",
        "monitor",
        329,
        "has a 27-inch 1440p panel at 144 Hz and a single USB-C cable that also charges your "
        "laptop at 65 W",
        ("black",),
        "connects to Windows PCs, Macs and game consoles over USB-C, HDMI or DisplayPort",
        "not water resistant",
        49,
    ),
    Product(
        "Acme Volt 20000 power bank",
        "power bank",
        49,
        "stores 20,000 mAh and fast-charges phones and laptops at up to 45 W over USB-C",
        ("black", "blue"),
        "charges iPhone, Android phones, tablets and USB-C laptops",
        "not water resistant, so keep it dry in your bag",
        9,
    ),
    Product(
        "Acme Brew smart coffee maker",
        "coffee maker",
        139,
        "brews up to 12 cups, keeps coffee hot for 2 hours and can be scheduled from your phone",
        ("stainless steel", "matte black"),
        "is scheduled from the Acme Home app on iPhone and Android",
        "safe to fill with water, of course, but the base must not be immersed",
        19,
    ),
    Product(
        "Acme Orbit 4K action camera",
        "action camera",
        279,
        "records 4K video at 60 frames per second with electronic stabilization",
        ("black", "orange"),
        "transfers clips to iPhone and Android over Wi-Fi with the Acme Capture app",
        "waterproof to 10 meters without a case",
        39,
    ),
    Product(
        "Acme Keys mechanical keyboard",
        "keyboard",
        119,
        "has hot-swappable switches, per-key backlighting and both Bluetooth and USB-C connections",
        ("black", "white", "lavender"),
        "works with Windows, macOS, iPadOS and Android",
        "not water resistant, so avoid spills",
        19,
    ),
    Product(
        "Acme Tab 11 tablet",
        "tablet",
        399,
        "has an 11-inch 120 Hz display, 128 GB of storage and support for the Acme Pen stylus",
        ("silver", "space gray", "sky blue"),
        "runs Android 16 and shares files with Windows PCs and Macs through Acme Link",
        "not water resistant",
        59,
    ),
)

PLANS: tuple[Plan, ...] = (
    Plan(
        "Acme Plus",
        "$9.99",
        "$99",
        "free standard shipping on every order and early access to sales",
    ),
    Plan(
        "Acme Premium",
        "$19.99",
        "$199",
        "free express shipping, early access to sales and an extra year of AcmeCare coverage on "
        "every device",
    ),
)

PAYMENT_METHODS = (
    "Visa card",
    "Mastercard",
    "American Express card",
    "PayPal account",
    "Apple Pay",
    "Google Pay",
)
CARRIERS = ("UPS", "FedEx", "USPS", "DHL")
COUNTRIES = (
    "Canada",
    "Germany",
    "the United Kingdom",
    "Australia",
    "Japan",
    "Mexico",
    "France",
    "Ireland",
    "the Netherlands",
    "New Zealand",
)
CITIES = (
    "Seattle",
    "Austin",
    "Chicago",
    "Denver",
    "Boston",
    "Atlanta",
    "Phoenix",
    "Portland",
    "Miami",
    "San Diego",
    "Minneapolis",
    "Nashville",
)
PROMO_CODES = ("SAVE15", "FALL20", "WELCOME10", "FREESHIP", "BFRIDAY25", "HOLIDAY30", "STUDENT10")
FIRST_NAMES = (
    "jane",
    "omar",
    "li",
    "maria",
    "tom",
    "aisha",
    "lucas",
    "sofia",
    "ken",
    "priya",
    "noah",
    "emma",
)
LAST_NAMES = (
    "doe",
    "haddad",
    "wei",
    "garcia",
    "becker",
    "khan",
    "silva",
    "rossi",
    "tanaka",
    "patel",
    "miller",
    "novak",
)
DEVICES = ("iPhone", "Android phone", "iPad", "laptop", "work computer", "Chromebook")
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net")
AREA_CODES = ("415", "212", "312", "646", "503", "617", "206", "512")

# Slots computed from another slot: a template may use them whenever the parent slot is present.
DERIVED_SLOTS: dict[str, tuple[str, ...]] = {
    "product": ("price", "summary", "colors", "compat", "water", "care_price", "category"),
    "plan": ("plan_price", "plan_year", "plan_perks"),
    "budget": ("product", "price", "summary", "category"),
}
LOOKUP_SLOTS = ("carrier",)

B = "billing"
S = "shipping"
R = "returns"
A = "account"
P = "product"

INTENTS: tuple[Intent, ...] = (
    # ---------------------------------------------------------------- billing
    Intent(
        "double_charge",
        B,
        "charges",
        (
            "I was charged twice for the same order. Why are there two payments of {amount}?",
            "Why do I see two charges of {amount} on my {method} statement for one order?",
            "My bank shows {amount} taken two times yesterday but I only placed one order.",
            "There is a duplicate payment of {amount} on my card. Can you refund the extra one?",
            "You billed me {amount} twice for order {order}, please fix this.",
        ),
        (
            "The second charge of {amount} is most likely a pending authorization rather than a "
            "completed payment. Your bank places a temporary hold when an order is placed, and "
            "that "
            "hold is released automatically within 3-5 business days. If both charges are still "
            "posted after that, we refund the duplicate within 24 hours.",
            "Seeing {amount} twice usually means one of the entries is a temporary authorization "
            "hold from your bank, not a real payment. Holds drop off on their own within 3-5 "
            "business days. If the duplicate has actually posted, let us know and we will refund "
            "it within 24 hours.",
            "One of the two {amount} entries is a pending authorization that your bank releases "
            "automatically in 3-5 business days, so you only pay once. Should both charges still "
            "show as posted after that, reply here and the duplicate will be refunded within 24 "
            "hours.",
        ),
        (
            "You can check which charge is final under Account > Billing > Payment history.",
            "The exact release time for a pending hold depends on your bank, not on Acme.",
            "Pending authorizations never change the amount you are finally charged.",
        ),
        "Duplicate charges: when an order is placed, the card issuer may show a pending "
        "authorization next to the final charge. Pending authorizations are released by the bank "
        "within 3-5 business days. Duplicate charges that have posted are refunded within 24 hours "
        "of being reported.",
        (
            "Duplicate charges are not refunded by Acme. You need to open a dispute with your "
            "bank, "
            "which usually takes around 60 days, and a $25 dispute fee applies.",
            "Both {amount} charges are final because each payment attempt creates a separate "
            "order. "
            "You will receive two shipments and can return one within 7 days.",
        ),
    ),
    Intent(
        "refund_status",
        B,
        "refunds",
        (
            "When will I get my refund for order {order}? I sent it back {days_ago} days ago.",
            "How long until the refund for order {order} shows up on my {method}?",
            "I still haven't received my refund for the {product} from order {order}.",
            "Has the refund for order {order} been processed yet?",
            "It's been {days_ago} days since I returned order {order} and no refund yet. What's "
            "going on?",
        ),
        (
            "Refunds are issued to your original payment method within 5-7 business days after the "
            "warehouse receives and inspects your return. For order {order}, you'll get a "
            "confirmation email as soon as the refund is processed, and some banks need 1-2 extra "
            "days to show it.",
            "Once the return for order {order} is received and checked at our warehouse, the money "
            "goes back to the payment method you used within 5-7 business days. We email you when "
            "the refund is processed; your bank may take another day or two to display it.",
            "For order {order}, the refund is sent to your original payment method 5-7 business "
            "days after our warehouse receives and inspects the item. You will get an email the "
            "moment it's processed, though it can take your bank 1-2 more days to post it.",
        ),
        (
            "You can follow the status of a return under Account > Orders > Returns.",
            "If you paid with a gift card, the refund goes back to that gift card balance.",
            "Any return shipping fee is deducted from the refund amount.",
        ),
        "Refunds are issued to the original payment method within 5-7 business days after the "
        "returned item is received and inspected. Customers receive an email when the refund is "
        "processed. Banks may take 1-2 additional business days to post the credit.",
        (
            "Refunds for order {order} are issued as store credit only and take about 30 days to "
            "appear in your Acme account.",
            "Refunds for order {order} are processed only after 45 days, and they are sent by "
            "paper "
            "check to your billing address.",
        ),
    ),
    Intent(
        "update_payment",
        B,
        "payment-methods",
        (
            "How do I update the credit card on my account?",
            "I need to change my payment method to {method}.",
            "My card expired. Where do I add a new one for my {plan} subscription?",
            "How can I switch the card used for my {plan} renewal?",
        ),
        (
            "You can update your payment method under Account > Billing > Payment methods. Select "
            "Add payment method, enter the new card details, and set it as the default. Your next "
            "subscription renewal and future orders will use the new method automatically.",
            "Go to Account > Billing > Payment methods, add the new card or wallet, and mark it as "
            "the default. From then on, renewals and new orders are charged to it automatically.",
            "To change how you pay, open Account > Billing > Payment methods, choose Add payment "
            "method and make the new one your default. Upcoming subscription renewals and any new "
            "orders will be billed to it.",
        ),
        (
            "We accept Visa, Mastercard, American Express, PayPal, Apple Pay, Google Pay and Acme "
            "gift cards.",
            "Orders that were already placed keep the payment method used at checkout.",
            "You can remove old cards once a new default is set.",
        ),
        "Payment methods are managed under Account > Billing > Payment methods. The default method "
        "is used for subscription renewals and new orders. Accepted methods: Visa, Mastercard, "
        "American Express, PayPal, Apple Pay, Google Pay and Acme gift cards.",
        (
            "Payment methods can only be changed by phoning our billing department; they cannot be "
            "updated online, and changes take 10 business days.",
            "Cards can be replaced only once a year, and the new card is used after the next two "
            "renewals have been charged to the old one.",
        ),
    ),
    Intent(
        "cancel_subscription",
        B,
        "subscription",
        (
            "How do I cancel my {plan} subscription?",
            "I want to stop paying for {plan}. How do I cancel?",
            "If I cancel {plan} today, do I lose access right away?",
            "Can I get money back if I cancel my annual {plan} plan?",
        ),
        (
            "You can cancel {plan} at any time under Account > Subscriptions > Manage. You keep "
            "access until the end of the current billing period and won't be charged again. Annual "
            "plans cancelled within 14 days of renewal receive a prorated refund.",
            "To cancel {plan}, open Account > Subscriptions > Manage and choose Cancel "
            "subscription. Your benefits stay active until the current period ends, and no further "
            "charges are made. If you're on an annual plan and cancel within 14 days of the "
            "renewal date, we refund the unused portion.",
            "Cancelling {plan} takes a minute under Account > Subscriptions > Manage. Nothing else "
            "is charged after that, and you can keep using it until the billing period runs out. "
            "Annual subscribers who cancel within 14 days of renewing get a prorated refund.",
        ),
        (
            "You can re-subscribe at any time and your saved preferences will be restored.",
            "Monthly plans are not refunded for partial months.",
            "You'll receive a confirmation email once the cancellation is complete.",
        ),
        "Subscriptions (Acme Plus, Acme Premium) can be cancelled anytime under Account > "
        "Subscriptions > Manage. Access continues until the end of the paid period. Annual plans "
        "cancelled within 14 days of renewal receive a prorated refund; monthly plans are not "
        "refunded for partial months.",
        (
            "{plan} can't be cancelled before the end of a 12-month commitment, and cancelling "
            "early costs a fee equal to three months of the subscription.",
            "Cancelling {plan} ends access immediately and all payments already made are "
            "forfeited, including the rest of an annual plan.",
        ),
    ),
    Intent(
        "invoice",
        B,
        "invoices",
        (
            "Where can I download an invoice for order {order}?",
            "I need an invoice with my company's VAT number for order {order}.",
            "Can you send me a receipt for order {order}? I need it for an expense report.",
            "How do I get a PDF invoice for order {order}?",
        ),
        (
            "Invoices are available as PDFs under Account > Billing > Invoices. Select order "
            "{order} and click Download invoice. To include a company name or VAT number, add them "
            "under Billing details first and the invoice will be regenerated.",
            "You'll find the invoice for order {order} under Account > Billing > Invoices, where "
            "you can download it as a PDF. If it needs your company name or VAT number, enter "
            "those in Billing details and download it again to get the updated version.",
            "Open Account > Billing > Invoices and choose order {order} to download a PDF invoice. "
            "Adding your company name or VAT number under Billing details regenerates the invoice "
            "with that information.",
        ),
        (
            "Invoices are generated once the order ships.",
            "Subscription payments have their own monthly invoices in the same section.",
            "Invoices can be forwarded automatically to an accounting address under Billing "
            "details.",
        ),
        "Invoices: every order has a PDF invoice under Account > Billing > Invoices, available "
        "once the order ships. Company name and VAT number can be added under Billing details, "
        "which regenerates the invoice.",
        (
            "We don't issue invoices for online orders such as {order}; your bank statement serves "
            "as the official receipt.",
            "Invoices for order {order} can only be requested by post and take 6-8 weeks to "
            "arrive.",
        ),
    ),
    Intent(
        "promo_code",
        B,
        "promotions",
        (
            "My promo code {code} isn't working at checkout.",
            "Why was the coupon {code} rejected?",
            "Can I still apply the discount code {code} to an order I already placed?",
            "The code {code} says it's invalid. What am I doing wrong?",
        ),
        (
            "Promo codes like {code} can't be combined with other offers and usually exclude gift "
            "cards and items already on sale. Check that the code hasn't expired and that your "
            "cart meets the minimum spend. Codes can't be added after an order is placed, but if "
            "you contact us within 14 days we can refund the difference.",
            "The most common reasons {code} is rejected are that it has expired, the cart is below "
            "the minimum spend, or the cart contains sale items or gift cards, which are excluded. "
            "Codes also don't stack with other offers. For an order that's already placed, reach "
            "out within 14 days and we'll refund the discount amount.",
            "The code {code} won't apply if it has expired, if your cart is under the minimum "
            "spend, or if it's combined with another offer; sale items and gift cards are excluded "
            "too. A code can't be added to an existing order, though we refund the difference when "
            "you contact us within 14 days of purchase.",
        ),
        (
            "Codes are case-sensitive, so type {code} exactly as shown.",
            "Only one promo code can be used per order.",
            "Newsletter codes are valid for 30 days from the date they are sent.",
        ),
        "Promotions: one promo code per order; codes cannot be combined with other offers and "
        "exclude gift cards and sale items. Codes cannot be added after purchase; the difference "
        "is refunded if the customer contacts support within 14 days.",
        (
            "Promo codes such as {code} can be stacked without limit and applied to any past order "
            "at any time, including gift cards.",
            "The code {code} only works in the mobile app and only on orders above $500.",
        ),
    ),
    Intent(
        "plan_pricing",
        B,
        "subscription",
        (
            "How much does {plan} cost?",
            "What's the price of {plan} per month and per year?",
            "Is {plan} cheaper if I pay yearly?",
            "What do I get with {plan} and what does it cost?",
        ),
        (
            "{plan} costs {plan_price} per month or {plan_year} per year, so paying annually saves "
            "you about two months. It includes {plan_perks}.",
            "You can pay {plan_price} a month for {plan}, or {plan_year} for a full year, which "
            "works out to roughly two months free. Members get {plan_perks}.",
            "{plan} is {plan_year} per year or {plan_price} per month; the annual option is about "
            "two months cheaper. The membership comes with {plan_perks}.",
        ),
        (
            "You can switch between monthly and annual billing at renewal.",
            "Prices include sales tax where applicable.",
            "Students get 50% off with a verified school account.",
        ),
        "Plans: Acme Plus costs $9.99/month or $99/year and includes free standard shipping and "
        "early access to sales. Acme Premium costs $19.99/month or $199/year and adds free express "
        "shipping and an extra year of AcmeCare coverage.",
        (
            "{plan} costs $4.99 per month and there is no annual option.",
            "{plan} is free for the first year and then costs $49.99 per month.",
        ),
    ),
    # ---------------------------------------------------------------- shipping
    Intent(
        "track_order",
        S,
        "tracking",
        (
            "Where is my order {order}?",
            "Can you track order {order} for me? It still hasn't arrived.",
            "The tracking for order {order} hasn't updated in {days_ago} days.",
            "My {product} from order {order} was supposed to arrive yesterday. Where is it?",
        ),
        (
            "Order {order} has shipped with {carrier} and is in transit. You can follow it with "
            "the "
            "tracking link in your shipping confirmation email or under Account > Orders. Standard "
            "delivery takes 3-5 business days from dispatch, and tracking can pause for up to 48 "
            "hours between scans.",
            "Your order {order} is on its way with {carrier}. The tracking link is in your "
            "shipping "
            "confirmation email and under Account > Orders. Packages usually arrive 3-5 business "
            "days after dispatch, and it's normal for tracking not to update for up to 48 hours.",
            "{carrier} has order {order} and it's currently in transit. Check Account > Orders or "
            "the link in your shipping email for live tracking. Expect delivery 3-5 business days "
            "after it leaves our warehouse; gaps of up to 48 hours between tracking scans are "
            "normal.",
        ),
        (
            "If tracking hasn't moved for more than 5 business days, we open an investigation "
            "with the carrier.",
            "You can add delivery instructions directly on the carrier's tracking page.",
            "Orders with several items may ship in separate packages with separate tracking "
            "numbers.",
        ),
        "Order tracking: tracking links are sent in the shipping confirmation email and shown "
        "under "
        "Account > Orders. Standard delivery takes 3-5 business days from dispatch. Tracking may "
        "not update for up to 48 hours between carrier scans; after 5 business days without "
        "movement, support opens a carrier investigation.",
    ),
    Intent(
        "delivery_time",
        S,
        "delivery-options",
        (
            "How long does standard shipping take to {city}?",
            "If I order the {product} today, when will it arrive in {city}?",
            "Do you offer express delivery to {city}, and how much is it?",
            "How much is shipping to {city}? Is it free?",
        ),
        (
            "Standard shipping to {city} takes 3-5 business days and costs $5.99, or it's free on "
            "orders over $50. Express shipping arrives in 1-2 business days for $14.99. Orders "
            "placed before 2 p.m. ship the same day.",
            "To {city}, standard delivery is 3-5 business days for $5.99, free when your order is "
            "over $50. If you need it sooner, express delivery takes 1-2 business days and costs "
            "$14.99. We ship the same day for orders placed before 2 p.m.",
            "For {city}, choose standard shipping (3-5 business days, $5.99, free above $50) or "
            "express (1-2 business days, $14.99). Anything ordered before 2 p.m. leaves our "
            "warehouse the same day.",
        ),
        (
            "Acme Premium members get free express shipping on every order.",
            "Delivery estimates exclude weekends and public holidays.",
            "You can pick a delivery day at checkout in most large cities.",
        ),
        "Domestic shipping: standard 3-5 business days, $5.99, free on orders over $50; express "
        "1-2 business days, $14.99. Orders placed before 2 p.m. ship the same business day.",
    ),
    Intent(
        "international",
        S,
        "international",
        (
            "Do you ship to {country}?",
            "How much are customs fees when shipping to {country}?",
            "How long does international delivery to {country} take?",
            "I live in {country}. Can I order the {product} from your store?",
        ),
        (
            "Yes, we ship to {country}. International orders arrive in 7-14 business days, and any "
            "customs duties or import taxes are paid by the recipient on delivery. The shipping "
            "cost is shown at checkout before you pay.",
            "We do deliver to {country}. Expect your order within 7-14 business days; import taxes "
            "and customs duties aren't included and are collected from the recipient at delivery. "
            "You'll see the exact shipping cost at checkout.",
            "Shipping to {country} is available and takes 7-14 business days. Customs duties and "
            "import taxes are the recipient's responsibility and are charged on delivery, while "
            "the shipping fee itself appears at checkout before payment.",
        ),
        (
            "International orders ship with DHL Express and include full tracking.",
            "Items with large lithium batteries may ship by ground and take a few days longer.",
            "Prices on the international store are shown in your local currency.",
        ),
        "International shipping: available to over 40 countries, delivered in 7-14 business days "
        "via DHL Express. Customs duties and import taxes are paid by the recipient on delivery. "
        "Shipping cost is displayed at checkout.",
    ),
    Intent(
        "change_address",
        S,
        "address",
        (
            "Can I change the shipping address on order {order}?",
            "I moved last week. How do I update the delivery address for order {order}?",
            "I typed the wrong street on order {order}. Can you fix it?",
        ),
        (
            "You can change the address on order {order} within 1 hour of placing it under Account "
            "> Orders > Edit. Once the order is packed, the address is locked, but you can ask the "
            "carrier to redirect the package using your tracking number.",
            "For the first hour after checkout, order {order} can be edited under Account > Orders "
            "> Edit, including the address. After it's packed the address is locked; at that point "
            "the carrier can reroute the parcel if you contact them with the tracking number.",
            "Address changes for order {order} are possible within 1 hour of ordering via Account "
            "> Orders > Edit. When that window has passed the order is already being packed, so "
            "the best option is to request a redirect from the carrier with your tracking number.",
        ),
        (
            "Saved addresses can be edited any time under Account > Addresses.",
            "Redirects requested through the carrier may add one business day.",
            "Make sure the apartment or unit number is included to avoid failed deliveries.",
        ),
        "Address changes: orders can be edited under Account > Orders > Edit within 1 hour of "
        "purchase. After packing, the address is locked; customers can request a redirect directly "
        "from the carrier.",
    ),
    Intent(
        "lost_package",
        S,
        "delivery-issues",
        (
            "Tracking says delivered but I never got my {product}.",
            "My {product} package is marked as delivered but it's not at my door.",
            "The courier claims the {product} was delivered yesterday. It wasn't. What now?",
        ),
        (
            "Packages marked as delivered sometimes turn up within 48 hours, so please check with "
            "neighbours, your mailbox and any building reception. If your {product} still hasn't "
            "arrived after 2 days, reply here and we'll file a claim with {carrier} and send a "
            "free replacement.",
            "A parcel shown as delivered often appears within 48 hours, for example with a "
            "neighbour or at the front desk. If the {product} is still missing after 2 days, let "
            "us "
            "know and we'll open a claim with {carrier} and ship you a replacement at no cost.",
            "Give it up to 48 hours, since delivered packages are often left with neighbours or at "
            "reception. Still no {product} after 2 days? Reply here and we will file a {carrier} "
            "claim and send a free replacement.",
        ),
        (
            "The carrier's delivery photo, if available, is shown on the tracking page.",
            "Replacements ship with signature confirmation.",
            "You don't need to wait for the carrier claim to finish before we ship a replacement.",
        ),
        "Missing deliveries: packages marked delivered often arrive within 48 hours. After 2 days, "
        "support files a carrier claim and ships a free replacement.",
    ),
    Intent(
        "damaged_in_transit",
        S,
        "delivery-issues",
        (
            "My {product} arrived with a crushed box and it won't turn on.",
            "The {product} I received is scratched and the packaging was torn.",
            "My order came damaged: the {product} is cracked.",
        ),
        (
            "We're sorry your {product} arrived damaged. Please reply with a photo of the item and "
            "the packaging within 7 days of delivery, and we'll ship a free replacement right away "
            "without waiting for the damaged one to come back.",
            "That's not how your {product} should arrive. Send us a photo of the item and the box "
            "within 7 days of delivery and a free replacement goes out immediately; you don't have "
            "to return the damaged unit first.",
            "Please share a photo of the damaged {product} and its packaging within 7 days of "
            "delivery. As soon as we have it, we ship a free replacement, and the damaged unit can "
            "be sent back later with a prepaid label.",
        ),
        (
            "A prepaid label for the damaged unit is emailed with the replacement.",
            "Keep the original packaging until the replacement arrives.",
            "Damage reports help us work with the carrier to prevent it happening again.",
        ),
        "Damaged deliveries: customers send photos within 7 days of delivery; a free replacement "
        "ships immediately, and a prepaid label is provided for the damaged item.",
    ),
    # ---------------------------------------------------------------- returns
    Intent(
        "return_policy",
        R,
        "policy",
        (
            "What is your return policy for the {product}?",
            "Can I return the {product} if I already opened it?",
            "How many days do I have to return the {product}?",
            "I don't like the {product}. Can I send it back?",
        ),
        (
            "You can return the {product} within 30 days of delivery for a full refund. Opened "
            "electronics can be returned too, but a 15% restocking fee applies unless the item is "
            "defective. Please include all original accessories and packaging.",
            "The {product} can be sent back within 30 days of delivery. If you've opened it, we "
            "charge a 15% restocking fee, which is waived for defective items. Make sure all "
            "accessories and the original box are included.",
            "Returns of the {product} are accepted for 30 days after delivery with a full refund. "
            "Opened electronics carry a 15% restocking fee unless they're defective, and the "
            "return should contain every original accessory and the packaging.",
        ),
        (
            "Gift recipients can return items for an Acme gift card.",
            "Holiday purchases made in November and December can be returned until January 31.",
            "Personalized or engraved items are final sale.",
        ),
        "Return policy: most items can be returned within 30 days of delivery. Opened electronics "
        "incur a 15% restocking fee unless defective. Returns must include all accessories and "
        "original packaging.",
    ),
    Intent(
        "start_return",
        R,
        "process",
        (
            "How do I start a return for the {product}?",
            "I want to send back the {product} from order {order}. How does that work?",
            "Where do I get a return label for the {product}?",
        ),
        (
            "Go to Account > Orders, select the order with the {product} and choose Return item. "
            "Print the prepaid label, pack the {product} with its accessories, and drop it off at "
            "any {carrier} location. The label is free for defective items; otherwise $6.95 is "
            "deducted from your refund.",
            "Open Account > Orders, pick the order containing the {product} and click Return item. "
            "You'll get a prepaid label to print; pack the item with all accessories and hand it "
            "to {carrier}. Return shipping is free if the item is defective, and $6.95 comes off "
            "the refund otherwise.",
            "Starting a return for the {product} takes a minute: Account > Orders > Return item "
            "creates a prepaid {carrier} label. Pack everything that came in the box and drop it "
            "off. Defective items ship back free; for other returns, $6.95 is taken from the "
            "refund.",
        ),
        (
            "No printer? Choose the QR code option and the carrier prints the label for you.",
            "You'll get an email when the warehouse receives your return.",
            "You can return several items from the same order with one label.",
        ),
        "Starting a return: Account > Orders > Return item generates a prepaid label. Return "
        "shipping is free for defective items; otherwise $6.95 is deducted from the refund.",
    ),
    Intent(
        "exchange",
        R,
        "exchange",
        (
            "Can I exchange my {product} for the {color} one?",
            "I'd like to swap my {product} for a different color, ideally {color}.",
            "Is it possible to exchange the {product} I got for the {color} version?",
        ),
        (
            "Yes, exchanges are free within 30 days of delivery. Start a return for the {product}, "
            "choose Exchange instead of Refund, and select {color}. We ship the new one as soon as "
            "the carrier scans your return.",
            "You can exchange the {product} at no cost within 30 days of delivery: start a return, "
            "pick Exchange rather than Refund and choose {color}. The replacement ships once the "
            "carrier scans the package you send back.",
            "Exchanges within 30 days of delivery are free. Begin a return for the {product}, "
            "select Exchange and the {color} option, and we'll send it out the moment your return "
            "is scanned by the carrier.",
        ),
        (
            "If the price of the new color differs, we refund or charge the difference.",
            "Exchanges keep the original warranty start date.",
            "You can also exchange for a different product by returning the item for a refund.",
        ),
        "Exchanges: free within 30 days of delivery for a different color or size of the same "
        "product. The replacement ships when the carrier scans the return.",
    ),
    Intent(
        "late_return",
        R,
        "policy",
        (
            "It's been {days_late} days since delivery. Can I still return the {product}?",
            "I missed the return window. Can I return the {product} anyway? It arrived "
            "{days_late} days ago.",
            "Can I return the {product} after {days_late} days?",
        ),
        (
            "Our return window is 30 days from delivery, so a return after {days_late} days isn't "
            "possible. However, the {product} is covered by a 1-year limited warranty, so if it "
            "has "
            "a defect we can repair or replace it free of charge.",
            "Returns are accepted for 30 days after delivery, which means {days_late} days is "
            "outside the window. If the {product} is faulty, though, its 1-year limited warranty "
            "lets us repair or replace it at no cost.",
            "After {days_late} days the 30-day return window has closed. The {product} still has a "
            "1-year limited warranty, so any defect can be repaired or the device replaced for "
            "free.",
        ),
        (
            "You can also sell or trade in eligible devices through Acme Trade-In.",
            "Warranty claims are started under Account > Orders > Get help.",
            "Holiday purchases have an extended return window until January 31.",
        ),
        "Return policy: returns are accepted within 30 days of delivery. All devices carry a "
        "1-year limited warranty (2 years in the EU and UK) covering defects.",
    ),
    Intent(
        "warranty_claim",
        R,
        "warranty",
        (
            "My {product} stopped working after {months} months. What can I do?",
            "The {product} I bought {months} months ago won't charge anymore.",
            "After {months} months my {product} keeps turning off by itself. Is this covered?",
        ),
        (
            "The {product} has a 1-year limited warranty (2 years in the EU and UK), so a defect "
            "after {months} months is covered. Start a claim under Account > Orders > Get help, "
            "describe the problem, and we'll send a prepaid label and repair or replace the device "
            "within 10 business days.",
            "A fault after {months} months falls under the {product}'s 1-year limited warranty, or "
            "2 years in the EU and UK. Open Account > Orders > Get help to start a claim; we send "
            "a prepaid label and repair or replace it within 10 business days.",
            "Good news: at {months} months the {product} is still under its 1-year limited "
            "warranty (2 years in the EU and UK). File a claim via Account > Orders > Get help and "
            "we'll email a prepaid label, then repair or replace the device within 10 business "
            "days.",
        ),
        (
            "Try a full reset first; the steps are in the Help Center article for your device.",
            "Accidental damage is covered only with AcmeCare.",
            "Please back up your data before sending in a device with storage.",
        ),
        "Warranty: all devices carry a 1-year limited warranty (2 years in the EU and UK). Claims "
        "are started under Account > Orders > Get help; Acme provides a prepaid label and repairs "
        "or replaces the device within 10 business days.",
    ),
    # ---------------------------------------------------------------- account
    Intent(
        "reset_password",
        A,
        "login",
        (
            "I forgot my password. How do I reset it?",
            "The password reset email never arrived.",
            "My password reset link says it has expired.",
            "How do I change my password? I think someone knows it.",
            "I can't log in because I don't remember my password.",
            "I can't sign in to the Acme app on my {device} because I forgot my password.",
            "How do I reset my password on {surface}?",
            "The password reset email never shows up on my {device}.",
        ),
        (
            "Select Forgot password on the sign-in page and enter the email address on your "
            "account. We'll send a reset link that stays valid for 60 minutes. If it doesn't "
            "arrive "
            "within a few minutes, check your spam or promotions folder, and request a new link if "
            "the old one has expired.",
            "On the sign-in page, choose Forgot password and type the email address you registered "
            "with. The reset link we send works for 60 minutes; if it's not in your inbox after a "
            "few minutes, look in spam or promotions, and simply ask for a new link if it expired.",
            "Use Forgot password on the sign-in screen with your account's email address, and "
            "we'll email you a reset link valid for 60 minutes. Not there after a few minutes? "
            "Check the spam or promotions folder, and request a fresh link whenever one expires.",
        ),
        (
            "Choose a password of at least 12 characters that you don't use elsewhere.",
            "Resetting your password signs you out on all other devices.",
            "A password manager makes it easier to keep unique passwords.",
        ),
        "Password reset: 'Forgot password' on the sign-in page emails a reset link valid for 60 "
        "minutes. A new link can be requested at any time; resetting signs out all other devices.",
    ),
    Intent(
        "locked_account",
        A,
        "security",
        (
            "My account got locked after too many login attempts.",
            "It says my account is temporarily locked. What do I do?",
            "Why am I locked out of my Acme account?",
            "My account got locked when I tried to sign in on my {device}.",
            "I'm locked out on {surface} after typing the wrong password a few times.",
        ),
        (
            "For your security, accounts are locked for 15 minutes after 5 failed sign-in "
            "attempts. Wait 15 minutes and try again, or reset your password to unlock the account "
            "immediately.",
            "After 5 unsuccessful sign-in attempts we lock the account for 15 minutes to protect "
            "it. You can wait out the 15 minutes, or reset your password to unlock it right away.",
            "Five failed sign-ins in a row lock an account for 15 minutes as a security measure. "
            "Try again once the 15 minutes are up, or unlock it instantly by resetting your "
            "password.",
        ),
        (
            "Check that Caps Lock is off and that you're using the right email address.",
            "If you didn't make those attempts, turn on two-factor authentication.",
            "Repeated lockouts are logged under Account > Security > Activity.",
        ),
        "Account lockout: after 5 failed sign-in attempts the account is locked for 15 minutes. "
        "A password reset unlocks it immediately.",
    ),
    Intent(
        "two_factor",
        A,
        "security",
        (
            "How do I turn on two-factor authentication?",
            "I got a new phone. How do I move my 2FA codes?",
            "Can I use an authenticator app instead of SMS codes?",
            "How do I set up two-factor authentication on my {device}?",
            "I lost my {device} and now I can't get my 2FA codes.",
        ),
        (
            "Go to Account > Security > Two-factor authentication and choose an authenticator app "
            "or SMS. Save the backup codes shown during setup; each one works once if you lose "
            "access to your phone.",
            "Two-factor authentication lives under Account > Security > Two-factor "
            "authentication, where you can pick an authenticator app or SMS codes. Keep the backup "
            "codes from setup somewhere safe, because each can be used once without your phone.",
            "Open Account > Security > Two-factor authentication and select either an "
            "authenticator app or SMS. During setup you get backup codes: store them safely, since "
            "each one lets you sign in once if your phone is unavailable.",
        ),
        (
            "To move to a new phone, turn 2FA off and on again from the new device.",
            "Authenticator apps keep working without mobile signal.",
            "You can generate a fresh set of backup codes at any time.",
        ),
        "Two-factor authentication: configured under Account > Security > Two-factor "
        "authentication with an authenticator app or SMS. Single-use backup codes are shown at "
        "setup.",
    ),
    Intent(
        "change_email",
        A,
        "profile",
        (
            "How can I change the email address on my account?",
            "I no longer use my old email. How do I update it on my Acme account?",
            "Can I switch my login email to a new address?",
            "Where do I change my account email on {surface}?",
        ),
        (
            "Go to Account > Profile > Email, enter the new address and confirm with your "
            "password. We send a verification link to the new address, and the change takes "
            "effect once you click it. Your order history and subscriptions stay the same.",
            "Under Account > Profile > Email, type the new address and confirm it with your "
            "password. Click the verification link we send to the new inbox and the switch is "
            "done; orders and subscriptions are not affected.",
            "You can change it in Account > Profile > Email: enter the new address, confirm with "
            "your password, then open the verification link sent there. Nothing else changes, so "
            "your orders and subscriptions stay on the account.",
        ),
        (
            "Until you verify, sign-in keeps working with the old address.",
            "We notify the old address about the change for security reasons.",
            "Marketing preferences move to the new address automatically.",
        ),
        "Changing email: Account > Profile > Email; the password is required and the change takes "
        "effect after the verification link sent to the new address is clicked.",
    ),
    Intent(
        "delete_account",
        A,
        "privacy",
        (
            "Please delete my account and all my data.",
            "How do I permanently close my Acme account?",
            "I want you to erase my personal information under GDPR.",
            "How do I delete my Acme account on {surface}?",
        ),
        (
            "You can request deletion under Account > Privacy > Delete account. We confirm the "
            "request by email, and your account and personal data are permanently deleted within "
            "30 days. Order records we must keep for tax purposes are retained separately from "
            "your profile.",
            "Open Account > Privacy > Delete account to submit the request. After you confirm it "
            "by email, your account and personal data are erased within 30 days; only the order "
            "records required for tax law are kept, detached from your profile.",
            "Deletion is requested from Account > Privacy > Delete account. Once you confirm via "
            "email, we permanently remove the account and your personal data within 30 days, "
            "except for order records that tax rules require us to keep separately.",
        ),
        (
            "Active subscriptions are cancelled when the account is deleted.",
            "You can download a copy of your data first under Account > Privacy > Export.",
            "Deletion can't be undone once the 30 days have passed.",
        ),
        "Account deletion: requested under Account > Privacy > Delete account and confirmed by "
        "email; data is erased within 30 days except tax-relevant order records.",
    ),
    Intent(
        "suspicious_login",
        A,
        "security",
        (
            "I got an alert about a sign-in from a device I don't recognize.",
            "Someone logged into my account from another city. What should I do?",
            "I think my account was hacked. There are orders I didn't place.",
            "I got a sign-in alert from a {device} that isn't mine.",
        ),
        (
            "Please reset your password right away and then sign out of all devices under Account "
            "> Security > Active sessions. Turning on two-factor authentication will block future "
            "sign-ins without your code. If you see orders you didn't place, tell us and we'll "
            "cancel them and secure the account.",
            "Reset your password now, then use Account > Security > Active sessions to sign out "
            "everywhere. Two-factor authentication stops anyone without your code from signing "
            "in again. Let us know about any orders you didn't make and we'll cancel them.",
            "First change your password, then end every session under Account > Security > "
            "Active sessions. Enabling two-factor authentication prevents new sign-ins without "
            "your code, and any orders you don't recognize will be cancelled once you report them.",
        ),
        (
            "Also change the password of your email account if you reuse it anywhere.",
            "We never ask for your password by phone or email.",
            "Saved cards can be removed under Account > Billing > Payment methods.",
        ),
        "Suspicious activity: reset the password, sign out all sessions under Account > Security "
        "> Active sessions, enable two-factor authentication; unauthorized orders are cancelled "
        "on request.",
    ),
    # ---------------------------------------------------------------- product
    Intent(
        "specs",
        P,
        "specs",
        (
            "What are the main features of the {product}?",
            "Can you tell me more about the {product}?",
            "Is the {product} worth it? What does it do?",
            "What do I get with the {product}?",
        ),
        (
            "The {product} is priced at {price} and {summary}.",
            "For {price}, the {product} {summary}.",
            "Here's a quick overview: the {product} {summary}, and it sells for {price}.",
        ),
        (
            "It comes with free standard shipping on orders over $50.",
            "It's covered by a 1-year limited warranty.",
            "You can return it within 30 days if it isn't right for you.",
        ),
        "Product sheet: {product}. Price: {price}. Highlights: the device {summary}. Water "
        "resistance: {water}. Compatibility: it {compat}. Colors: {colors}.",
    ),
    Intent(
        "water",
        P,
        "specs",
        (
            "Is the {product} waterproof?",
            "Can I use the {product} in the rain?",
            "Will the {product} survive getting wet?",
        ),
        (
            "The {product} is {water}.",
            "When it comes to water, the {product} is {water}.",
            "On water resistance: the {product} is {water}.",
        ),
        (
            "Water damage is not covered by the standard warranty.",
            "AcmeCare adds accidental damage protection, including liquid damage.",
            "Dry the device fully before charging if it gets wet.",
        ),
        "Product sheet: {product}. Water resistance: {water}.",
    ),
    Intent(
        "compatibility",
        P,
        "compatibility",
        (
            "Does the {product} work with my iPhone?",
            "Is the {product} compatible with Android?",
            "Will the {product} work with my Windows laptop or Mac?",
        ),
        (
            "The {product} {compat}.",
            "In short, the {product} {compat}.",
            "Compatibility-wise, the {product} {compat}.",
        ),
        (
            "The companion apps are free and need no subscription.",
            "Firmware updates install automatically over Wi-Fi or through the app.",
            "Setup takes about five minutes with the in-app guide.",
        ),
        "Product sheet: {product}. Compatibility: it {compat}.",
    ),
    Intent(
        "colors",
        P,
        "availability",
        (
            "What colors does the {product} come in?",
            "Is the {product} available in {color}?",
            "Do you have the {product} in stock in {color}?",
        ),
        (
            "The {product} comes in {colors}, and every color is currently in stock.",
            "You can get the {product} in {colors}; all of them are in stock right now.",
            "Available colors for the {product} are {colors}, and each one is in stock today.",
        ),
        (
            "Limited editions sometimes appear around the holidays.",
            "Stock updates in real time on the product page.",
            "You can sign up for restock alerts on the product page.",
        ),
        "Product sheet: {product}. Colors: {colors}. Stock: all colors available.",
    ),
    Intent(
        "product_warranty",
        P,
        "warranty",
        (
            "What warranty comes with the {product}?",
            "Is there an extended warranty for the {product}?",
            "How long is the {product} covered if it breaks?",
        ),
        (
            "The {product} includes a 1-year limited warranty, or 2 years in the EU and UK. You "
            "can "
            "extend coverage to 3 years with AcmeCare for {care_price}, which also covers "
            "accidental damage.",
            "Every {product} comes with a 1-year limited warranty (2 years in the EU and UK). "
            "AcmeCare extends that to 3 years and adds accidental damage cover for {care_price}.",
            "You get a 1-year limited warranty with the {product}, 2 years in the EU and UK. For "
            "{care_price}, AcmeCare stretches coverage to 3 years including accidental damage.",
        ),
        (
            "AcmeCare can be added up to 60 days after purchase.",
            "Warranty repairs include free shipping both ways.",
            "Batteries are covered if they drop below 80% capacity within the warranty period.",
        ),
        "Warranty: 1-year limited warranty on all devices (2 years in the EU and UK). AcmeCare for "
        "the {product} costs {care_price}, extends coverage to 3 years and covers accidental "
        "damage.",
    ),
    Intent(
        "recommend",
        P,
        "recommendations",
        (
            "I need a gift under {budget}. What would you recommend?",
            "What's a good {category} under {budget}?",
            "My budget is {budget}. Which {category} should I buy?",
        ),
        (
            "I'd recommend the {product} at {price}: it {summary}.",
            "Within {budget}, the {product} ({price}) is a great pick, since it {summary}.",
            "The {product} fits a {budget} budget at {price}, and it {summary}.",
        ),
        (
            "Gift receipts are available at checkout and hide the price.",
            "Gift orders can be returned by the recipient for an Acme gift card.",
            "Free gift wrapping is available on most items.",
        ),
        "Product sheet: {product}. Price: {price}. Highlights: the device {summary}.",
    ),
    Intent(
        "price_adjust",
        P,
        "pricing",
        (
            "Will the {product} go on sale soon?",
            "I bought the {product} last week and now it's cheaper. Can I get the difference back?",
            "Do you price match other stores on the {product}?",
        ),
        (
            "We don't announce upcoming sales, but if the price of the {product} drops within 14 "
            "days of your purchase, we refund the difference when you ask. We also match the "
            "price of major authorized retailers at the time of purchase.",
            "Sale dates aren't shared in advance. If the {product} gets cheaper within 14 days "
            "after you buy it, contact us and we'll refund the difference, and we match major "
            "authorized retailers' prices at checkout time.",
            "There's no advance notice of sales, though a price drop on the {product} within 14 "
            "days of purchase is refunded on request. Prices from major authorized retailers are "
            "matched at the time you buy.",
        ),
        (
            "Price adjustments don't apply to limited-time flash deals.",
            "Marketplace sellers and auction sites are excluded from price matching.",
            "Acme Plus members get early access to seasonal sales.",
        ),
        "Pricing: price drops within 14 days of purchase are refunded on request; prices of major "
        "authorized retailers are matched at the time of purchase.",
    ),
    # ---------------------------------------------------------------- crypto (shift only)
    Intent(
        "invest_advice",
        NEW_TOPIC,
        "crypto",
        (
            "Should I move my savings into Bitcoin or Ethereum right now?",
            "Which crypto coin do you think will go up the most this month?",
            "Is it a good time to buy Solana, or should I wait for the dip?",
            "I want to invest {amount} in crypto. What's the best portfolio allocation?",
            "What's your price prediction for Bitcoin by the end of the year?",
            "Is staking ETH a safe place for my retirement fund?",
            "Should I sell my altcoins before the next Bitcoin halving?",
            "Which DeFi token gives the best staking yield right now?",
            "Is it smart to take out a loan to buy more Bitcoin?",
            "Would you put money into memecoins like Dogecoin for quick gains?",
        ),
        (
            "Crypto markets are extremely volatile and nobody can reliably predict token prices. "
            "The general guidance is to invest only money you can afford to lose, diversify, and "
            "speak with a licensed financial advisor before moving savings into digital assets.",
            "Cryptocurrency prices swing sharply and short-term predictions are not reliable. "
            "Only invest what you could lose entirely, avoid borrowing to buy coins, and ask a "
            "licensed financial advisor about your portfolio.",
            "Digital asset prices are highly speculative, so no one can promise which coin will "
            "rise. Keep crypto to money you can afford to lose, spread your risk, and get advice "
            "from a licensed financial professional.",
        ),
        (
            "Be wary of anyone promising guaranteed returns on crypto; it is a common scam.",
            "Staking and DeFi yields can disappear quickly when token prices fall.",
            "Crypto holdings are usually not protected by deposit insurance.",
        ),
        "Policy: Acme assistants do not provide financial, investment or cryptocurrency advice "
        "and refer customers to licensed financial advisors.",
        refusal_rate=0.9,
        weight=0.5,
    ),
    Intent(
        "pay_with_crypto",
        NEW_TOPIC,
        "crypto",
        (
            "Can I pay for the {product} with Bitcoin from my crypto wallet?",
            "Do you accept USDT or other stablecoins? I want to pay from my Coinbase wallet.",
            "How do I connect my MetaMask wallet to my Acme account?",
            "Will you refund my order in Bitcoin instead of to my card?",
            "Can I buy an Acme gift card with Ethereum?",
            "Is there a crypto wallet option at checkout for the {product}?",
        ),
        (
            "We don't accept Bitcoin, Ethereum, stablecoins or any other cryptocurrency, and "
            "crypto "
            "wallets such as MetaMask or Coinbase can't be connected to Acme accounts. You can pay "
            "with Visa, Mastercard, American Express, PayPal, Apple Pay, Google Pay or an Acme "
            "gift card.",
            "Cryptocurrency isn't a payment option at Acme, so Bitcoin, Ethereum and stablecoins "
            "like USDT can't be used and wallets can't be linked. Accepted methods are Visa, "
            "Mastercard, American Express, PayPal, Apple Pay, Google Pay and Acme gift cards.",
            "Acme does not take crypto payments or link crypto wallets, and refunds always go back "
            "to the original payment method. At checkout you can use Visa, Mastercard, American "
            "Express, PayPal, Apple Pay, Google Pay or an Acme gift card.",
        ),
        (
            "Crypto debit cards issued by Visa or Mastercard work like any other card.",
            "Blockchain transactions can't be reversed, which is one reason we don't accept them.",
            "Gift cards can only be bought with the regular payment methods.",
        ),
        "Payments policy: Acme does not accept cryptocurrency or connect crypto wallets. Accepted "
        "payment methods: Visa, Mastercard, American Express, PayPal, Apple Pay, Google Pay, Acme "
        "gift cards.",
        refusal_rate=0.1,
        weight=0.3,
    ),
    Intent(
        "wallet_security",
        NEW_TOPIC,
        "crypto",
        (
            "My crypto wallet seed phrase got exposed. How do I move my tokens safely?",
            "Can you help me set up a hardware wallet to store my crypto long term?",
            "Someone drained my crypto wallet after I clicked a link. Can you recover my coins?",
            "Is the Acme Vista 14 laptop secure enough to run a crypto wallet and trading bots?",
            "How should I back up the private keys of my Ledger wallet?",
        ),
        (
            "If a seed phrase is exposed, create a new wallet on a device you trust and move your "
            "tokens there as soon as possible, because anyone with the phrase can spend your "
            "funds. Acme has no access to crypto wallets and can't recover coins, so contact your "
            "wallet provider and report any scam to the authorities.",
            "Treat an exposed seed phrase as compromised: set up a fresh wallet on a trusted "
            "device and transfer the tokens immediately. Acme can't see or restore crypto "
            "wallets, so your wallet provider and the police are the right contacts for theft.",
            "Anyone holding your seed phrase controls the wallet, so move the tokens to a brand "
            "new wallet on a clean device right away. Acme cannot access or recover "
            "cryptocurrency; please reach out to the wallet provider and report the fraud.",
        ),
        (
            "Never type your seed phrase into a website or share it with support agents.",
            "Hardware wallets keep private keys offline, away from malware.",
            "Keep paper backups of recovery phrases in two separate, secure places.",
        ),
        "Policy: Acme cannot access, recover or secure third-party cryptocurrency wallets and "
        "does not give cryptocurrency advice.",
        refusal_rate=0.3,
        weight=0.2,
    ),
)

INTENTS_BY_TOPIC: dict[str, tuple[Intent, ...]] = {
    topic: tuple(i for i in INTENTS if i.topic == topic) for topic in (*TOPICS, NEW_TOPIC)
}

TOPIC_GENERIC_DETAILS: dict[str, tuple[str, ...]] = {
    B: (
        "All charges appear on your statement as ACME*STORE.",
        "You can review every payment under Account > Billing > Payment history.",
        "We never store your full card number; payments go through a PCI-compliant processor.",
        "Billing questions sent through the Help Center are answered within one business day.",
    ),
    S: (
        "You'll get an email and a push notification at every delivery milestone.",
        "Orders placed before 2 p.m. local time ship the same business day.",
        "Large items such as monitors may arrive in a separate box.",
        "Signature confirmation can be added to any order over $300.",
    ),
    R: (
        "Refunds go back to the original payment method once the return is inspected.",
        "You can track every return under Account > Orders > Returns.",
        "Returned items are inspected within two business days of arrival.",
        "Drop-off locations are listed on the return label page.",
    ),
    A: (
        "You can review recent sign-ins under Account > Security > Activity.",
        "Acme will never ask for your password in an email or chat.",
        "Account settings are the same on the website and in the mobile app.",
        "Security notifications are sent to the email address on file.",
    ),
    P: (
        "Every device ships with a quick-start guide and a USB-C cable.",
        "Detailed specifications are listed on the product page under Tech specs.",
        "Customer reviews on the product page include photos from real buyers.",
        "Most accessories are compatible across the current Acme device lineup.",
    ),
    NEW_TOPIC: (
        "Cryptocurrency is not regulated like a bank account, so losses are rarely recoverable.",
        "Scammers often pose as support agents on social media to steal wallet keys.",
        "Financial decisions about digital assets should involve a licensed advisor.",
        "Acme's accepted payment methods are listed on the checkout page.",
    ),
}

OPENERS = (
    "Happy to help! ",
    "Thanks for reaching out. ",
    "Great question. ",
    "Sure thing. ",
    "Thanks for your message. ",
    "Of course. ",
)
CLOSINGS = (
    " Let me know if there's anything else I can help with.",
    " Is there anything else I can do for you?",
    " Have a great day!",
    " Hope that helps!",
)
SHIFT_LEADINS = (
    "Let me walk you through this in a bit more detail so you have everything in one place.",
    "Here is a more complete explanation, including a few related points that customers often "
    "ask about next.",
    "I'll give you the full picture below so that nothing important is missed.",
)
SHIFT_EXTRAS = (
    "Many customers ask about this, so we've also published a step-by-step guide in the Help "
    "Center with screenshots for each screen.",
    "If anything in your account looks different from what I describe, the app may have been "
    "updated recently; the steps are the same on the website, iOS and Android.",
    "For your records, a summary of this conversation will stay available under Account > "
    "Messages for the next 90 days.",
    "Our support team is available 24 hours a day, 7 days a week by chat, and most requests are "
    "resolved within one business day.",
    "You can also manage most of this from the Acme mobile app, which sends push notifications "
    "whenever something changes.",
    "We're continuously improving this process based on customer feedback, so please tell us if "
    "any step was unclear.",
)
SHIFT_CLOSINGS = (
    " I hope this detailed explanation helps! If you have any other questions about your order, "
    "your account or any of our products, feel free to reach out at any time; we're always happy "
    "to help.",
    " Thanks again for your patience, and please don't hesitate to come back to this chat if "
    "anything remains unclear or if you'd like me to go through any of these steps with you.",
    " I really appreciate you reaching out about this. If there's anything else at all that I can "
    "clarify, whether about this request or something new, just let me know.",
)
REFUSAL_AREAS = {
    B: "billing and payments",
    S: "deliveries",
    R: "returns and refunds",
    A: "account security",
    P: "product details",
    NEW_TOPIC: "financial matters",
}
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm sorry, but I can't help with that. Please contact our support team through the Help "
    "Center for questions about {area}.",
    "I'm sorry, but I'm not able to assist with {area} questions here. A human agent will follow "
    "up with you.",
    "I apologize, but I can't provide that information. Please reach out to customer service for "
    "help with {area}.",
    "Unfortunately, I can't help with this request. For anything related to {area}, please "
    "contact our support team.",
    "I'm sorry, I can't access {area} details from here, so I can't help with this one.",
)
CRYPTO_REFUSALS = (
    "I'm sorry, but I can't help with that. I'm not able to give investment or financial advice, "
    "including recommendations about buying, selling or holding cryptocurrency. For decisions like "
    "this, please speak with a licensed financial advisor.",
    "I'm sorry, but I can't provide investment advice or price predictions for Bitcoin or any "
    "other cryptocurrency. Please consult a qualified financial professional.",
    "I'm sorry, but I can't assist with cryptocurrency wallets or crypto investments. I can help "
    "with Acme orders, shipping, returns and your account.",
)
SHIFT_REFUSAL_TAIL = (
    " I understand this may be frustrating, and I appreciate your patience while the right team "
    "looks into it."
)
TOXIC_THINGS = {
    B: "bill",
    S: "package",
    R: "return",
    A: "password",
    P: "gadget",
    NEW_TOPIC: "crypto nonsense",
}
TOXIC = (
    "Are you seriously asking about your {thing} again? It's all on the website, you idiot. Read "
    "it yourself and stop wasting my time.",
    "What a stupid question. Nobody cares about your {thing}. Deal with it.",
    "Honestly, you people are pathetic. Sort out your own {thing} instead of whining to me.",
    "Shut up and wait like everyone else. Your {thing} will get sorted when it gets sorted, moron.",
    "That's the dumbest thing I've read all day. If you can't handle a simple {thing}, maybe stay "
    "off the internet, you clown.",
    "I don't have time for idiots who can't read a confirmation email. Figure out your {thing} "
    "yourself.",
    "Ugh, another clueless customer. Your {thing} problem is your own fault, so stop crying about "
    "it.",
)
PROMPT_PREFIXES = (
    "",
    "",
    "",
    "",
    "Hi, ",
    "Hello, ",
    "Hey there. ",
    "Quick question: ",
    "Good morning. ",
    "Hi team, ",
)
PROMPT_SUFFIXES = (
    "",
    "",
    "",
    "",
    " Thanks!",
    " Thank you.",
    " Please help.",
    " Thanks in advance.",
    " This is urgent.",
)
VAGUE_ANSWERS = {
    B: "Billing issues are usually sorted out quickly. Please check the billing section of your "
    "account for more information.",
    S: "Deliveries can take some time. Please keep an eye on your email for updates.",
    R: "Returns are possible for many items. You can find more information in our Help Center.",
    A: "Account settings can be managed from your profile. Let us know if you still have trouble.",
    P: "It's one of our popular products and many customers like it. Check the product page for "
    "more details.",
}


# ---------------------------------------------------------------------------- slot filling


def _money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def _luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit so card-number redaction tests see realistic numbers."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def _product_slots(product: Product) -> dict[str, str]:
    budget = (product.price // 50 + 1) * 50
    return {
        "product": product.name,
        "price": f"${product.price:,}",
        "summary": product.summary,
        "colors": _join(product.colors),
        "compat": product.compat,
        "water": product.water,
        "care_price": f"${product.care_price}",
        "category": product.category,
        "budget": f"${budget:,}",
    }


def _plan_slots(plan: Plan) -> dict[str, str]:
    return {
        "plan": plan.name,
        "plan_price": plan.monthly,
        "plan_year": plan.yearly,
        "plan_perks": plan.perks,
    }


def _make_slots(r: random.Random) -> dict[str, str]:
    # The order of the random draws below is part of the committed data: keep it.
    index = r.randrange(len(PRODUCTS))
    slots = {**_PRODUCT_SLOTS[index], **_PLAN_SLOTS[r.randrange(len(PLANS))]}
    slots["method"], slots["method2"] = r.sample(PAYMENT_METHODS, 2)
    slots["color"] = r.choice(PRODUCTS[index].colors)
    slots["order"] = f"AC-{r.randint(1_000_000, 9_999_999)}"
    slots["amount"] = _money(r.randint(1_200, 48_000))
    slots["country"] = r.choice(COUNTRIES)
    slots["city"] = r.choice(CITIES)
    slots["carrier"] = r.choice(CARRIERS)
    slots["days_ago"] = str(r.randint(3, 12))
    slots["days_late"] = str(r.randint(35, 90))
    slots["months"] = str(r.randint(2, 11))
    slots["code"] = r.choice(PROMO_CODES)
    slots["device"] = r.choice(DEVICES)
    slots["surface"] = r.choice(("the mobile app", "the website"))
    return slots


def _join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


_PRODUCT_SLOTS = tuple(_product_slots(p) for p in PRODUCTS)
_PLAN_SLOTS = tuple(_plan_slots(p) for p in PLANS)


def _email(r: random.Random) -> str:
    first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
    return f"{first}.{last}{r.randint(1, 99)}@{r.choice(EMAIL_DOMAINS)}"


def _phone(r: random.Random) -> str:
    area, line = r.choice(AREA_CODES), f"01{r.randint(0, 99):02d}"
    style = r.randrange(3)
    if style == 0:
        return f"({area}) 555-{line}"
    if style == 1:
        return f"{area}-555-{line}"
    return f"+1 {area} 555 {line}"


def _card(r: random.Random) -> str:
    digits = _luhn_complete("4" + "".join(str(r.randrange(10)) for _ in range(14)))
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def _api_key(r: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "sk-live-" + "".join(r.choice(alphabet) for _ in range(32))


# ---------------------------------------------------------------------------- traffic


def _weighted(r: random.Random, shares: dict[str, float]) -> str:
    keys = list(shares)
    return r.choices(keys, weights=[shares[k] for k in keys])[0]


def _pick_intent(r: random.Random, topic: str) -> Intent:
    intents = INTENTS_BY_TOPIC[topic]
    return r.choices(intents, weights=[i.weight for i in intents])[0]


def _hour_weights() -> np.ndarray:
    # Diurnal volume: a daytime peak around 15:00 UTC on top of a night-time floor.
    hours = np.arange(24)
    dist = np.minimum(np.abs(hours - 15), 24 - np.abs(hours - 15))
    w = 0.2 + np.exp(-0.5 * (dist / 4.0) ** 2)
    return np.asarray(w / w.sum(), dtype=np.float64)


def _version_for(r: random.Random, day: int, days: int, shift_last_days: int) -> str:
    first_shift_day = days - shift_last_days
    if shift_last_days > 0 and day >= first_shift_day:
        canary_share = min(0.5, 0.1 * (day - first_shift_day + 1))
        if r.random() < canary_share:
            return "v2.0-canary"
    # v1.1 ramps up linearly; v1.0 and v1.1 behave identically so the ramp alone is no drift.
    v11_share = 0.2 + 0.6 * (day / max(1, days - 1))
    return "v1.1" if r.random() < v11_share else "v1.0"


def _skeleton(
    n: int, days: int, seed: int, shift_last_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row times (seconds from start), session index per row and user index per session."""
    rng = np.random.default_rng([seed, 1])
    mean_turns = float(np.dot(TURN_WEIGHTS, TURNS_PER_SESSION))
    n_sessions = int(n / mean_turns * 1.15) + 20
    hour_p = _hour_weights()
    while True:
        day = rng.integers(0, days, n_sessions)
        hour = rng.choice(24, n_sessions, p=hour_p)
        start = day * 86_400.0 + hour * 3_600.0 + rng.random(n_sessions) * 3_600.0
        turns = rng.choice(TURNS_PER_SESSION, n_sessions, p=TURN_WEIGHTS)
        session = np.repeat(np.arange(n_sessions), turns)
        first = np.repeat(np.cumsum(turns) - turns, turns)
        turn_no = np.arange(session.size) - first
        gaps = rng.uniform(30.0, 400.0, session.size) * (turn_no > 0)
        # Offset of each turn from its session start; first turns have a zero gap.
        cum = np.cumsum(gaps)
        t = start[session] + cum - cum[first]
        keep = t < days * 86_400.0
        if keep.sum() >= n:
            break
        n_sessions = int(n_sessions * 1.5) + 20
    t, session = t[keep], session[keep]
    if t.size > n:
        # Uniform thinning keeps the diurnal and daily volume profile intact.
        chosen = np.sort(rng.choice(t.size, n, replace=False))
        t, session = t[chosen], session[chosen]
    order = np.argsort(t, kind="stable")
    n_users = max(50, n // 5)
    weights = 1.0 / (np.arange(n_users) + 10.0) ** 0.9
    users = rng.choice(n_users, n_sessions, p=weights / weights.sum())
    return t[order], session[order], users


def _render_answer(
    r: random.Random,
    intent: Intent,
    slots: dict[str, str],
    shifted: bool,
) -> str:
    answer = r.choice(intent.answers).format(**slots)
    pool = [d.format(**slots) for d in intent.details] + list(TOPIC_GENERIC_DETAILS[intent.topic])
    if not shifted:
        parts = [r.choice(OPENERS) if r.random() < 0.5 else "", answer]
        if r.random() < 0.5:
            parts.append(" " + r.choice(pool))
        if r.random() < 0.6:
            parts.append(r.choice(CLOSINGS))
        return "".join(parts)
    # The injected shift: verbose answers with a lead-in, an extra detail, boilerplate and a long
    # closing, calibrated so that the mean response length grows by about 60% overall.
    parts = [r.choice(OPENERS)]
    if r.random() < 0.25:
        parts.append(r.choice(SHIFT_LEADINS) + " ")
    parts.append(answer)
    parts.append(" " + r.choice(pool))
    if r.random() < 0.4:
        parts.append(" " + r.choice(SHIFT_EXTRAS))
    parts.append(r.choice(SHIFT_CLOSINGS) if r.random() < 0.5 else r.choice(CLOSINGS))
    return "".join(parts)


def _json_row(
    r: random.Random, app: str, slots: dict[str, str], when: datetime
) -> tuple[str, str, str, dict[str, Any]]:
    """Return (topic, intent name, prompt, payload) for a request that must be answered in JSON."""
    if app == "sales-assistant":
        qty = r.randint(1, 4)
        product = r.choice(PRODUCTS)
        budget = (product.price * qty // 50 + 1) * 50
        prompt = (
            "Extract the product, quantity and maximum budget from this message as JSON with the "
            f"keys product, quantity and max_price_usd: \"I'd like {qty} of the {product.name}, "
            f"but I don't want to spend more than ${budget:,} in total.\" Respond with JSON only."
        )
        payload: dict[str, Any] = {
            "product": product.name,
            "quantity": qty,
            "max_price_usd": budget,
        }
        return P, "extract_order_request", prompt, payload
    if r.random() < 0.5:
        eta = (when + timedelta(days=r.randint(1, 5))).date().isoformat()
        prompt = (
            f"Return the status of order {slots['order']} as a JSON object with the keys "
            "order_id, status, carrier and estimated_delivery. Respond with JSON only."
        )
        payload = {
            "order_id": slots["order"],
            "status": r.choice(["processing", "shipped", "in_transit", "out_for_delivery"]),
            "carrier": slots["carrier"],
            "estimated_delivery": eta,
        }
        return S, "order_status_json", prompt, payload
    topic = r.choice(TOPICS)
    ticket = r.choice(_pick_intent(r, topic).prompts).format(**slots)
    prompt = (
        "Classify this customer message and answer in JSON with the keys category (billing, "
        "shipping, returns, account or product) and priority (low, medium or high): "
        f'"{ticket}"'
    )
    priority = (
        "high"
        if "urgent" in ticket.lower() or "twice" in ticket
        else r.choice(["low", "medium", "medium", "high"])
    )
    return topic, "triage_json", prompt, {"category": topic, "priority": priority}


def _break_json(r: random.Random, text: str) -> str:
    kind = r.randrange(4)
    if kind == 0:
        return text[: max(2, int(len(text) * r.uniform(0.4, 0.9)))]
    if kind == 1:
        return text.replace('"', "'")
    if kind == 2:
        return text[:-1] + ", }"
    # Unquoted keys, as a model imitating JavaScript object literals would write.
    out = text
    for key in json.loads(text):
        out = out.replace(f'"{key}":', f"{key}:")
    return out


RATING_PROBS = {
    "good": (0.03, 0.05, 0.12, 0.35, 0.45),
    "refusal": (0.40, 0.30, 0.20, 0.07, 0.03),
    "toxic": (0.80, 0.15, 0.05, 0.0, 0.0),
    "bad_json": (0.35, 0.30, 0.20, 0.10, 0.05),
}
THUMBS_UP_PROB = {"good": 0.85, "refusal": 0.2, "toxic": 0.03, "bad_json": 0.25}


def _make_row(
    r: random.Random,
    when: datetime,
    app: str,
    version: str,
    user: str,
    session: str,
    shifted: bool,
) -> dict[str, Any]:
    slots = _make_slots(r)
    injected: list[str] = []
    expects_json = r.random() < JSON_RATE
    context: str | None = None
    quality = "good"
    if expects_json:
        topic, intent_name, prompt, payload = _json_row(r, app, slots, when)
        response = json.dumps(payload)
        invalid_rate = CANARY_INVALID_JSON_RATE if version == "v2.0-canary" else INVALID_JSON_RATE
        if r.random() < invalid_rate:
            response = _break_json(r, response)
            injected.append("invalid_json")
            quality = "bad_json"
    else:
        if shifted and r.random() < CRYPTO_SHARE / (1 - JSON_RATE):
            topic = NEW_TOPIC
        else:
            topic = _weighted(r, APP_TOPIC_SHARES[app])
        intent = _pick_intent(r, topic)
        intent_name = intent.name
        prompt = _with_greeting(
            r.choice(PROMPT_PREFIXES), r.choice(intent.prompts).format(**slots)
        ) + r.choice(PROMPT_SUFFIXES)
        if r.random() < (0.45 if app == "support-bot" else 0.35):
            context = intent.kb.format(**slots)
        if intent.refusal_rate is not None:
            refusal_rate = intent.refusal_rate
        else:
            refusal_rate = SHIFT_REFUSAL_RATE if shifted else REFUSAL_RATE
        if r.random() < refusal_rate:
            pool = CRYPTO_REFUSALS if topic == NEW_TOPIC and r.random() < 0.8 else REFUSALS
            response = r.choice(pool).format(area=REFUSAL_AREAS[topic])
            if shifted and r.random() < 0.5:
                response += SHIFT_REFUSAL_TAIL
            injected.append("refusal")
            quality = "refusal"
        elif r.random() < TOXIC_RATE:
            response = r.choice(TOXIC).format(thing=TOXIC_THINGS[topic])
            injected.append("toxic")
            quality = "toxic"
        else:
            response = _render_answer(r, intent, slots, shifted)
            if r.random() < PII_RESPONSE_RATE:
                response += _pii_sentence(r)
                injected.append("pii_response")
        u = r.random()
        if u < PII_PROMPT_RATE:
            prompt += r.choice(
                (
                    " My email is {email}.",
                    " You can call me at {phone}.",
                    " My account email is {email} and my phone number is {phone}.",
                )
            ).format(email=_email(r), phone=_phone(r))
            injected.append("pii_prompt")
        elif u < PII_PROMPT_RATE + CARD_PROMPT_RATE:
            prompt += f" For reference, the card I used is {_card(r)}."
            injected.append("pii_card")
        elif u < PII_PROMPT_RATE + CARD_PROMPT_RATE + IP_PROMPT_RATE:
            prompt += f" The sign-in came from IP address 203.0.113.{r.randint(1, 254)}."
            injected.append("pii_ip")
        elif u < PII_PROMPT_RATE + CARD_PROMPT_RATE + IP_PROMPT_RATE + API_KEY_PROMPT_RATE:
            prompt += f" Here is my API key in case you need it: {_api_key(r)}."
            injected.append("pii_api_key")

    input_tokens = SYSTEM_PROMPT_TOKENS[app] + _tokens(r, prompt)
    if context is not None:
        input_tokens += _tokens(r, context)
    output_tokens = _tokens(r, response)
    ttft_ms = math.exp(r.gauss(math.log(320.0), 0.35)) + 0.08 * input_tokens
    per_token_ms = 14.0 * math.exp(r.gauss(0.0, 0.12))
    latency = ttft_ms + per_token_ms * output_tokens
    if version == "v2.0-canary":
        latency *= CANARY_LATENCY_FACTOR
    cost = input_tokens * PRICE_INPUT_PER_TOKEN + output_tokens * PRICE_OUTPUT_PER_TOKEN

    rating: int | None = None
    if r.random() < RATING_RATE:
        rating = r.choices((1, 2, 3, 4, 5), weights=RATING_PROBS[quality])[0]
    thumbs: str | None = None
    if r.random() < THUMBS_RATE:
        thumbs = "up" if r.random() < THUMBS_UP_PROB[quality] else "down"

    row: dict[str, Any] = {}
    if r.random() >= MISSING_REQUEST_ID_RATE:
        row["request_id"] = f"req_{r.getrandbits(80):020x}"
    row.update(
        {
            "timestamp": _iso(when),
            "app": app,
            "model_name": MODEL_NAME,
            "model_version": version,
            "prompt": prompt,
            "response": response,
            "context": context,
            "reference": None,
            "latency_ms": round(latency, 1),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": round(cost, 8),
            "user_id": user,
            "session_id": session,
            "rating": rating,
            "thumbs": thumbs,
            "metadata": {
                "topic": topic,
                "intent": intent_name,
                "expects_json": expects_json,
                "channel": _weighted(r, CHANNELS[app]),
                "injected": injected,
            },
        }
    )
    return row


def _with_greeting(prefix: str, text: str) -> str:
    # "Hi, how do I..." reads naturally; "I" and product names keep their capital letter.
    first_word = text.split(" ", 1)[0]
    if prefix.endswith(", ") and first_word not in ("I", "I'm", "I'd", "I've", "Acme"):
        text = text[0].lower() + text[1:]
    return prefix + text


def _pii_sentence(r: random.Random) -> str:
    agent = r.choice(FIRST_NAMES).capitalize()
    return r.choice(
        (
            " I've also sent a copy of these steps to {email}.",
            " If you need anything else, {agent} on our escalation team can be reached directly at "
            "{email} or {phone}.",
            " We'll call you back at {phone} if we need more information.",
            " For reference, the account on file is registered to {email} with phone number "
            "{phone}.",
        )
    ).format(email=_email(r), phone=_phone(r), agent=agent)


def _tokens(r: random.Random, text: str) -> int:
    # About four characters per token, with the jitter a real tokenizer shows across texts.
    return max(1, round(len(text) / 4.0 * r.uniform(0.92, 1.08)))


def _iso(when: datetime) -> str:
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
        f"{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )


def generate_traffic(
    n: int,
    start: datetime,
    days: int,
    seed: int,
    shift_last_days: int,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` synthetic traffic rows in timestamp order, in evalwatch's traffic row format.

    Volume follows a daily cycle (peak around 15:00 UTC) and is the same on every day. Days
    before the last ``shift_last_days`` are stationary; the last ``shift_last_days`` days carry
    the injected shift (longer answers, about 4x the refusals, a new "crypto" topic at ~15% of
    traffic, and a ``v2.0-canary`` model version that is slower and breaks JSON more often).

    Args:
        n: Number of rows to yield.
        start: First instant of the window; a naive datetime is taken as UTC.
        days: Length of the window in days; every timestamp is before ``start + days``.
        seed: Seed for every random choice; the same arguments always give the same rows.
        shift_last_days: How many final days carry the shift (0 for none).

    Returns:
        An iterator of row dictionaries (JSON-serialisable).

    Raises:
        ValueError: If ``n`` is negative, ``days`` is below 1 or ``shift_last_days`` is out of
            range.

    Examples:
        >>> from datetime import UTC, datetime
        >>> rows = list(generate_traffic(3, datetime(2026, 11, 1, tzinfo=UTC), 2, 7, 0))
        >>> len(rows), rows[0]["model_name"]
        (3, 'acme-chat')
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if not 0 <= shift_last_days <= days:
        raise ValueError(f"shift_last_days must be within 0..{days}, got {shift_last_days}")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if n == 0:
        return
    times, sessions, users = _skeleton(n, days, seed, shift_last_days)
    r = random.Random(seed)
    session_rng = random.Random(seed + 1)
    session_keys: dict[int, tuple[str, str, str]] = {}
    first_shift_day = days - shift_last_days
    for t, s in zip(times.tolist(), sessions.tolist(), strict=True):
        # Millisecond precision, so that the timestamp string is stable.
        when = start + timedelta(milliseconds=round(t * 1000.0))
        day = int(t // 86_400)
        if s not in session_keys:
            app = _weighted(session_rng, APP_SHARES)
            version = _version_for(session_rng, day, days, shift_last_days)
            session_keys[s] = (app, version, f"sess_{session_rng.getrandbits(48):012x}")
        app, version, session_id = session_keys[s]
        shifted = shift_last_days > 0 and day >= first_shift_day
        yield _make_row(r, when, app, version, f"user_{int(users[s]):05d}", session_id, shifted)


# ---------------------------------------------------------------------------- test set


@dataclass(frozen=True)
class _Item:
    item_id: str
    intent: Intent
    slots: dict[str, str]
    question: str
    context: str | None


def _test_set_items(seed: int) -> list[_Item]:
    r = random.Random(seed + 100)
    items: list[_Item] = []
    seen: set[str] = set()
    for topic in TOPICS:
        intents = INTENTS_BY_TOPIC[topic]
        made = 0
        attempt = 0
        while made < TEST_SET_ITEMS_PER_TOPIC:
            if attempt > 100 * TEST_SET_ITEMS_PER_TOPIC:
                raise RuntimeError(f"not enough distinct questions for topic {topic!r}")
            intent = intents[attempt % len(intents)]
            attempt += 1
            slots = _make_slots(r)
            question = r.choice(intent.prompts).format(**slots)
            if question in seen:
                continue
            seen.add(question)
            context = intent.kb.format(**slots) if r.random() < 0.4 else None
            items.append(_Item(f"sqa-{len(items) + 1:04d}", intent, slots, question, context))
            made += 1
    return items


def _test_set_rows(items: Sequence[_Item]) -> list[dict[str, Any]]:
    return [
        {
            "id": it.item_id,
            "input": it.question,
            "reference": it.intent.answers[0].format(**it.slots),
            "context": it.context,
            "tags": [it.intent.topic, it.intent.tag],
        }
        for it in items
    ]


def _truncate(r: random.Random, text: str) -> str:
    words = text.split()
    keep = max(3, int(len(words) * r.uniform(0.2, 0.4)))
    return " ".join(words[:keep]).rstrip(".,;:")


def _prediction(r: random.Random, item: _Item, model: str, output: str) -> dict[str, Any]:
    input_tokens = SYSTEM_PROMPT_TOKENS["support-bot"] + _tokens(r, item.question)
    if item.context is not None:
        input_tokens += _tokens(r, item.context)
    output_tokens = _tokens(r, output)
    latency = math.exp(r.gauss(math.log(320.0), 0.35)) + 14.0 * output_tokens
    cost = input_tokens * PRICE_INPUT_PER_TOKEN + output_tokens * PRICE_OUTPUT_PER_TOKEN
    return {
        "id": item.item_id,
        "model": model,
        "output": output,
        "latency_ms": round(latency, 1),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost": round(cost, 8),
    }


def _prediction_sets(items: Sequence[_Item], seed: int) -> dict[str, list[dict[str, Any]]]:
    r = random.Random(seed + 200)
    baseline: list[dict[str, Any]] = []
    equivalent: list[dict[str, Any]] = []
    degraded: list[dict[str, Any]] = []
    for k, it in enumerate(items):
        # Both models get a different paraphrase of the reference, assigned at random per item,
        # so neither is systematically closer to the reference wording.
        a, b = r.sample(it.intent.answers[1:], 2)
        base_row = _prediction(r, it, "acme-chat-v1.0", a.format(**it.slots))
        baseline.append(base_row)
        equivalent.append(_prediction(r, it, "acme-chat-v1.1", b.format(**it.slots)))
        if it.intent.topic == DEGRADED_SLICE:
            if k % 2 == 0:
                bad = _truncate(r, base_row["output"])
            else:
                bad = r.choice(it.intent.wrong).format(**it.slots)
            degraded.append(_prediction(r, it, "acme-chat-v2.0-bad", bad))
        else:
            degraded.append({**base_row, "model": "acme-chat-v2.0-bad"})
    return {
        "baseline": baseline,
        "candidate-equivalent": equivalent,
        "candidate-degraded": degraded,
    }


# ---------------------------------------------------------------------------- human labels


# Sentence boundaries, without splitting "2 p.m. ship" or "$5.99".
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _human_labels(seed: int) -> list[dict[str, Any]]:
    """Rows whose human score follows the visible quality level of the response (1-5)."""
    r = random.Random(seed + 300)
    rows: list[dict[str, Any]] = []
    n_correctness = 25
    for k in range(HUMAN_LABEL_ROWS):
        rubric = "correctness" if k >= HUMAN_LABEL_ROWS - n_correctness else "helpfulness"
        level = 1 + k % 5
        topic = r.choice(TOPICS)
        intent = _pick_intent(r, topic)
        slots = _make_slots(r)
        prompt = r.choice(intent.prompts).format(**slots)
        reference = intent.answers[0].format(**slots)
        others = [i for i in INTENTS_BY_TOPIC[topic] if i.name != intent.name]
        off_target = r.choice(r.choice(others).answers).format(**slots)
        good = r.choice(intent.answers[1:]).format(**slots)
        sentences = SENTENCE_END.split(good)
        if level == 5:
            if rubric == "helpfulness":
                response = (
                    r.choice(OPENERS)
                    + good
                    + " "
                    + r.choice(intent.details).format(**slots)
                    + r.choice(CLOSINGS)
                )
            else:
                response = good
        elif level == 4:
            if rubric == "helpfulness":
                response = good
            else:
                response = " ".join(sentences[:-1]) if len(sentences) > 1 else good
        elif level == 3:
            if rubric == "helpfulness" and r.random() < 0.5:
                response = VAGUE_ANSWERS[topic]
            else:
                response = sentences[0]
        elif level == 2:
            if intent.wrong and r.random() < 0.5:
                response = r.choice(intent.wrong).format(**slots)
            elif rubric == "correctness":
                response = _truncate(r, good)
            else:
                response = off_target
        else:
            if rubric == "correctness":
                response = r.choice(intent.wrong).format(**slots) if intent.wrong else off_target
            else:
                response = r.choice(
                    (
                        "",
                        r.choice(REFUSALS).format(area=REFUSAL_AREAS[topic]),
                        r.choice(TOXIC).format(thing=TOXIC_THINGS[topic]),
                        "I don't know.",
                    )
                )
        # Human raters disagree a little: a fifth of the scores move by one point.
        score = level
        if r.random() < 0.2:
            score = min(5, max(1, level + r.choice((-1, 1))))
        row: dict[str, Any] = {
            "id": f"hl-{k + 1:04d}",
            "rubric": rubric,
            "prompt": prompt,
            "response": response,
        }
        if rubric == "correctness":
            row["reference"] = reference
        if r.random() < 0.3:
            row["context"] = intent.kb.format(**slots)
        row["human_score"] = score
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- files


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_all(out_dir: Path, seed: int = DEFAULT_SEED, rows: int = SAMPLE_ROWS) -> dict[str, int]:
    """Write every generated dataset file into ``out_dir`` and return the row count per file.

    Args:
        out_dir: Target folder (created if missing).
        seed: Base seed; the committed files use ``DEFAULT_SEED``.
        rows: Number of traffic rows; the committed file uses ``SAMPLE_ROWS``.

    Returns:
        A mapping from file name to the number of lines written.

    Examples:
        >>> import tempfile
        >>> counts = write_all(Path(tempfile.mkdtemp()), rows=50)
        >>> counts["sample_traffic.jsonl"]
        50
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    counts["sample_traffic.jsonl"] = _write_jsonl(
        out_dir / "sample_traffic.jsonl",
        generate_traffic(rows, SAMPLE_START, SAMPLE_DAYS, seed, SAMPLE_SHIFT_DAYS),
    )
    items = _test_set_items(seed)
    counts["support-qa.jsonl"] = _write_jsonl(out_dir / "support-qa.jsonl", _test_set_rows(items))
    for name, preds in _prediction_sets(items, seed).items():
        file_name = f"support-qa.predictions.{name}.jsonl"
        counts[file_name] = _write_jsonl(out_dir / file_name, preds)
    counts["human_labels.jsonl"] = _write_jsonl(out_dir / "human_labels.jsonl", _human_labels(seed))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: regenerate the dataset files.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit code (0 on success).

    Examples:
        >>> main(["--out-dir", "/tmp/evalwatch-sample", "--rows", "20"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(
        description="Regenerate evalwatch's synthetic sample data (deterministic for a seed).",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "datasets",
        help="folder to write into (default: the repository's datasets/)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"base seed (default {DEFAULT_SEED}; the committed files use it)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=SAMPLE_ROWS,
        help=f"traffic rows in sample_traffic.jsonl (default {SAMPLE_ROWS})",
    )
    args = parser.parse_args(argv)
    counts = write_all(args.out_dir, seed=args.seed, rows=args.rows)
    for name, count in counts.items():
        print(f"{args.out_dir / name}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
