"""The publisher CLI (``python -m producer``): a realistic load over HTTP or straight over AMQP."""
