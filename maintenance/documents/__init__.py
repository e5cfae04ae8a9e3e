"""Invoice documents: numbers, parties, tax, credit notes, service credits, PDFs."""
