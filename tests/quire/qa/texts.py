"""Sample submissions: realistic prose, long enough for shingling to mean something."""

LEDGERS = """\
Double-entry bookkeeping records every movement of money twice: once where it leaves and once
where it arrives. An engineer who meets it for the first time tends to see redundancy, but the
second entry is what makes the books checkable. If every transfer debits one account and credits
another by the same amount, then the sum of all balances is always zero, and any row that breaks
that rule points straight at a bug. Modern ledgers keep entries append-only: a mistake is never
edited away, it is reversed by a new transfer that tells the story of the correction. Balances
are derived from entries rather than stored as mutable numbers, so two processes posting at the
same moment cannot silently overwrite each other. Amounts are held as integers in the smallest
unit of the currency, cents for dollars and yen for yen, because floating point arithmetic rounds
in ways an auditor will not accept. Currency conversion happens at explicit rates recorded with
the transfer, which lets finance explain every figure on a statement months later. Finally, the
ledger is reconciled against the bank regularly: what we believe we paid must match what the
bank says left the account, and every difference is investigated until it has a name.
"""

GARDENING = """\
Raised beds warm up earlier in spring than the surrounding soil, which gives tomatoes and beans
a head start of two or three weeks in a cool climate. Fill them with a mix of topsoil and well
rotted compost rather than pure compost, because the latter shrinks as it breaks down and leaves
roots exposed by midsummer. Water deeply and rarely instead of a little every evening; shallow
watering trains roots to stay near the surface where they dry out on the first hot afternoon.
Mulch with straw or shredded leaves once the ground has warmed, and most weeds will never see
daylight. Rotate crops between beds each year so that pests which overwinter in the soil wake up
to find their favourite food has moved. Keep a notebook of sowing dates, varieties and harvests:
after two seasons it becomes the most useful gardening book you own, written for your own plot,
your own weather and your own mistakes. Above all, start small, because a single bed tended well
feeds a family better than four beds abandoned to bindweed by July.
"""

COFFEE = """\
Espresso is a balance of grind size, dose and time. A finer grind slows the water and extracts
more, a coarser one lets it rush through and taste sour. Baristas usually fix the dose and the
ratio first, for example eighteen grams of coffee to thirty six grams of drink, and then adjust
the grind until the shot takes somewhere around twenty eight seconds. Fresh beans release carbon
dioxide for days after roasting, which makes the puck behave unpredictably, so most cafes let
beans rest for a week before using them. Water matters as much as coffee: too soft and the shot
tastes flat, too hard and scale builds up inside the machine. Clean the group head after every
service and backflush with detergent daily, because old oils turn rancid and no recipe can hide
that flavour. Taste every adjustment, change one variable at a time, and write down what you did.
"""


def lightly_edited(text: str) -> str:
    """The kind of disguise a copier applies: two phrases reworded, punctuation and case changed,
    the lines reflowed. Word shingles survive all of it except the swapped words' neighbourhoods."""
    edited = (
        text.replace("tends to see", "usually sees")
        .replace("regularly", "every month")
        .replace(";", ",")
    )
    return " ".join(edited.split()).upper()
