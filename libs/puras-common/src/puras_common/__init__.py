"""What every Puras service shares: the event catalogue, subjects, streams, outbox and inbox,
settings, logging, ids, money and the public API conventions. No business logic lives here."""
