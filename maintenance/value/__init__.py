"""The value report: what the service prevented and saved a customer each month."""
