"""The consuming side: stores each event once, then acks."""
