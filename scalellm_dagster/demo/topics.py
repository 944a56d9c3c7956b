"""The documented mapping from banking77's 77 intents to the demo's six coarse topics."""

TOPICS: dict[str, list[str]] = {
    "cards": [
        "activate_my_card", "apple_pay_or_google_pay", "card_about_to_expire", "card_acceptance",
        "card_arrival", "card_delivery_estimate", "card_linking", "card_not_working", "card_swallowed",
        "change_pin", "compromised_card", "contactless_not_working", "disposable_card_limits",
        "get_disposable_virtual_card", "get_physical_card", "getting_spare_card", "getting_virtual_card",
        "lost_or_stolen_card", "order_physical_card", "pin_blocked", "supported_cards_and_currencies",
        "virtual_card_not_working", "visa_or_mastercard",
    ],
    "payments_and_cash": [
        "Refund_not_showing_up", "atm_support", "card_payment_not_recognised",
        "card_payment_wrong_exchange_rate", "cash_withdrawal_not_recognised", "declined_card_payment",
        "declined_cash_withdrawal", "direct_debit_payment_not_recognised", "extra_charge_on_statement",
        "pending_card_payment", "pending_cash_withdrawal", "request_refund", "reverted_card_payment?",
        "transaction_charged_twice", "wrong_amount_of_cash_received", "wrong_exchange_rate_for_cash_withdrawal",
    ],
    "transfers": [
        "balance_not_updated_after_bank_transfer", "beneficiary_not_allowed", "cancel_transfer",
        "declined_transfer", "failed_transfer", "pending_transfer", "receiving_money", "transfer_into_account",
        "transfer_not_received_by_recipient", "transfer_timing",
    ],
    "top_ups": [
        "automatic_top_up", "balance_not_updated_after_cheque_or_cash_deposit", "pending_top_up",
        "top_up_by_cash_or_cheque", "top_up_failed", "top_up_limits", "top_up_reverted", "topping_up_by_card",
        "verify_top_up",
    ],
    "fees_and_exchange": [
        "card_payment_fee_charged", "cash_withdrawal_charge", "exchange_charge", "exchange_rate",
        "exchange_via_app", "fiat_currency_support", "top_up_by_bank_transfer_charge", "top_up_by_card_charge",
        "transfer_fee_charged",
    ],
    "account_and_security": [
        "age_limit", "country_support", "edit_personal_details", "lost_or_stolen_phone", "passcode_forgotten",
        "terminate_account", "unable_to_verify_identity", "verify_my_identity", "verify_source_of_funds",
        "why_verify_identity",
    ],
}

_BY_INTENT = {intent: topic for topic, intents in TOPICS.items() for intent in intents}


def topic_of_intent(intent: str) -> str:
    try:
        return _BY_INTENT[intent]
    except KeyError:
        raise KeyError(f"intent {intent!r} has no topic in scalellm_dagster/demo/topics.py") from None
