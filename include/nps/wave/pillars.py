"""The default pillar questions: the headline questions asked beside the NPS question.

A wave may set its own (trigger form, "Pillar questions"), each with optional `translations`
per locale. The texts below are marked for the translation catalogs (`N_`), so the defaults
reach customers in their own language. This module stays light: the DAG file imports it.
"""

from __future__ import annotations


def N_(text: str) -> str:  # gettext's name for "mark for translation, translate later"
    return text


DEFAULT_PILLARS = [
    {"id": "support", "text": N_("How satisfied are you with our support?"), "scale": "1-5"},
    {"id": "ease_of_use", "text": N_("How easy is the product to use?"), "scale": "1-5"},
    {"id": "value", "text": N_("How would you rate the value for money?"), "scale": "0-10"},
]
