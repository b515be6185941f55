"""`timebank demo`: a realistic district in a book `demo`, seeded through the HTTP API.

A social-work station and its communities, volunteer teams, social organisations and a charity
(each with an HOUR issuance account), a charity supermarket, residents' needs, a month of
service projects, a few hundred members, and their service: sign-ups, check-ins and check-outs
with the sites' rotating codes, records entered by hand, approvals (one by one and in bulk), a
few rejections, two answered disputes and one record reversed and replaced.

`district` holds the data it is drawn from, `plan` plans it (pure), `seeder` plays the plan
through the application in-process and `summary` reports what the book holds.
"""
