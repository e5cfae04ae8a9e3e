"""Asset kinds as data: the definition schema, the file loader, the catalogue tables and the
kind files shipped with fleetcare (``kinds/builtin/``), which load like a customer's own."""
