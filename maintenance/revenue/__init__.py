"""Revenue recognition: schedules per invoice line, the monthly revenue report, journal entries."""
