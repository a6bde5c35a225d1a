"""A round trip with a client generated from /openapi.json by openapi-python-client
(imported as `client`): create a tenant, add a yacht, capture a lead, list it,
move it, price a quote. Every call goes through the generated models, so a document
that does not say what the server does fails here.

    python roundtrip.py BASE_URL ADMIN_KEY
"""

import datetime
import sys

from client import AuthenticatedClient
from client.api.admin import create_tenant
from client.api.fleet import create_yacht
from client.api.leads import create_lead, list_leads, patch_lead
from client.api.quotes import create_quote
from client.models import (
    Consent,
    Currency,
    Guests,
    Lead,
    LeadPatch,
    LeadStatus,
    NewLeadRequest,
    NewQuoteRequest,
    NewTenantRequest,
    NewYachtRequest,
    PageLead,
    Quote,
    RateBand,
    RateBandWeeklyRate,
    TenantCreated,
    Yacht,
    YachtType,
)

BASE, ADMIN_KEY = sys.argv[1], sys.argv[2]


def expect(response, model):
    assert isinstance(response.parsed, model), (
        f"expected {model.__name__}, got HTTP {response.status_code}: {response.content[:500]!r}"
    )
    return response.parsed


admin = AuthenticatedClient(base_url=BASE, token=ADMIN_KEY, prefix="", auth_header_name="X-Admin-Key")
created = expect(
    create_tenant.sync_detailed(client=admin, body=NewTenantRequest(name="Round Trip Charters")),
    TenantCreated,
)
tenant = AuthenticatedClient(base_url=BASE, token=created.secret_key)

start = datetime.date.today() + datetime.timedelta(days=60)
end = start + datetime.timedelta(days=7)
yacht = expect(
    create_yacht.sync_detailed(
        client=tenant,
        body=NewYachtRequest(
            name="Meltemi",
            type_=YachtType.CATAMARAN,
            max_guests=8,
            rates=[
                RateBand(
                    season="summer",
                    from_=start - datetime.timedelta(days=30),
                    to=end + datetime.timedelta(days=30),
                    weekly_rate=RateBandWeeklyRate(amount=700_000, currency=Currency.EUR),
                )
            ],
        ),
    ),
    Yacht,
)

lead = expect(
    create_lead.sync_detailed(
        client=tenant,
        body=NewLeadRequest(
            name="Ada Lovelace",
            email="ada@example.com",
            consent=Consent(privacy_policy=True),
            charter_from=start,
            charter_to=end,
            guests=Guests(adults=4, children=1),
            yacht_id=yacht.id,
        ),
    ),
    Lead,
)
assert lead.status == LeadStatus.NEW

page = expect(list_leads.sync_detailed(client=tenant, limit=10), PageLead)
assert [item.id for item in page.data] == [lead.id], page.data

moved = expect(
    patch_lead.sync_detailed(lead.id, client=tenant, body=LeadPatch(status=LeadStatus.CONTACTED)),
    Lead,
)
assert moved.status == LeadStatus.CONTACTED

quote = expect(
    create_quote.sync_detailed(client=tenant, body=NewQuoteRequest(lead_id=lead.id, yacht_id=yacht.id)),
    Quote,
)
assert quote.total.amount > 0 and quote.total.currency == Currency.EUR, quote.total
assert quote.charter_from == start and quote.charter_to == end
print(f"round trip: tenant {created.tenant.id}, lead {lead.id}, quote {quote.id} of {quote.total.amount} EUR cents")
