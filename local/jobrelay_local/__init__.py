"""The embedded default: jobrelay on one machine, no AWS account."""
