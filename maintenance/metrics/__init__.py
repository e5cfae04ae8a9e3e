"""SaaS metrics: recurring revenue and its movements, retention, churn, renewals."""
