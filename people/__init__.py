"""People: the users of each organisation, their sign-in, sessions, invitations and resets.

An organisation is the operator (one, implicit), a customer (``customers``) or a service
partner (``partners``). Those tables already carry everything an organisation is — a name, a
lifecycle (``retired_at`` stops every key and user of it), and the identity every tenant row is
keyed on (``customer_id``, ``partner_id``) — so a user names its organisation the way an API key
does (``organisation`` plus ``customer_id`` or ``partner_id``) rather than through a new
``organisations`` table that would have to mirror both and be kept in step. Single sign-on
(OpenID Connect) is prepared for: a user has a ``sign_in_method`` and an optional external
issuer and subject, unique together.
"""
