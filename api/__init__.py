"""The HTTP side: validates events and publishes them to RabbitMQ with publisher confirms."""
