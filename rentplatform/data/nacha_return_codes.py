"""NACHA ACH return reason codes R01-R99 (seed data; editable in the admin afterwards).

"Counts as NSF" follows common practice in property accounting: funds-related returns count
towards a lease's NSF count (eSite's Setup > Return Codes "Count for NSF"); administrative
returns do not. Codes NACHA leaves unassigned are seeded as "Reserved" so any R-code a bank
sends can be recorded, and a person can describe it later.
"""

NACHA_RETURN_CODES: dict[str, tuple[str, bool]] = {
    "R01": ("Insufficient funds", True),
    "R02": ("Account closed", True),
    "R03": ("No account / unable to locate account", True),
    "R04": ("Invalid account number", True),
    "R05": ("Unauthorized debit to consumer account using corporate SEC code", False),
    "R06": ("Returned per ODFI's request", False),
    "R07": ("Authorization revoked by customer", True),
    "R08": ("Payment stopped", True),
    "R09": ("Uncollected funds", True),
    "R10": ("Customer advises not authorized", True),
    "R11": ("Customer advises entry not in accordance with the terms of the authorization", False),
    "R12": ("Account sold to another DFI", False),
    "R13": ("Invalid ACH routing number", False),
    "R14": ("Representative payee deceased or unable to continue", False),
    "R15": ("Beneficiary or account holder deceased", False),
    "R16": ("Account frozen / entry returned per OFAC instruction", True),
    "R17": ("File record edit criteria / entry with invalid account number", False),
    "R18": ("Improper effective entry date", False),
    "R19": ("Amount field error", False),
    "R20": ("Non-transaction account", True),
    "R21": ("Invalid company identification", False),
    "R22": ("Invalid individual ID number", False),
    "R23": ("Credit entry refused by receiver", False),
    "R24": ("Duplicate entry", False),
    "R25": ("Addenda error", False),
    "R26": ("Mandatory field error", False),
    "R27": ("Trace number error", False),
    "R28": ("Routing number check digit error", False),
    "R29": ("Corporate customer advises not authorized", True),
    "R30": ("RDFI not participant in check truncation program", False),
    "R31": ("Permissible return entry (CCD and CTX only)", False),
    "R32": ("RDFI non-settlement", False),
    "R33": ("Return of XCK entry", False),
    "R34": ("Limited participation DFI", False),
    "R35": ("Return of improper debit entry", False),
    "R36": ("Return of improper credit entry", False),
    "R37": ("Source document presented for payment", False),
    "R38": ("Stop payment on source document", True),
    "R39": ("Improper source document / source document presented for payment", False),
    "R40": ("Return of ENR entry by federal government agency", False),
    "R41": ("Invalid transaction code (ENR)", False),
    "R42": ("Routing number / check digit error (ENR)", False),
    "R43": ("Invalid DFI account number (ENR)", False),
    "R44": ("Invalid individual ID number / identification number (ENR)", False),
    "R45": ("Invalid individual name / company name (ENR)", False),
    "R46": ("Invalid representative payee indicator (ENR)", False),
    "R47": ("Duplicate enrollment (ENR)", False),
    "R50": ("State law affecting RCK acceptance", False),
    "R51": ("Item related to RCK entry is ineligible or RCK entry is improper", False),
    "R52": ("Stop payment on item related to RCK entry", True),
    "R53": ("Item and RCK entry presented for payment", False),
    "R61": ("Misrouted return", False),
    "R62": ("Return of erroneous or reversing debit", False),
    "R67": ("Duplicate return", False),
    "R68": ("Untimely return", False),
    "R69": ("Field error(s)", False),
    "R70": ("Permissible return entry not accepted / return not requested by ODFI", False),
    "R71": ("Misrouted dishonored return", False),
    "R72": ("Untimely dishonored return", False),
    "R73": ("Timely original return", False),
    "R74": ("Corrected return", False),
    "R75": ("Return not a duplicate", False),
    "R76": ("No errors found", False),
    "R77": ("Non-acceptance of R62 dishonored return", False),
    "R80": ("IAT entry coding error", False),
    "R81": ("Non-participant in IAT program", False),
    "R82": ("Invalid foreign receiving DFI identification", False),
    "R83": ("Foreign receiving DFI unable to settle", False),
    "R84": ("Entry not processed by gateway", False),
    "R85": ("Incorrectly coded outbound international payment", False),
}


def all_codes() -> list[tuple[str, str, bool]]:
    rows = []
    for n in range(1, 100):
        code = f"R{n:02d}"
        description, nsf = NACHA_RETURN_CODES.get(code, ("Reserved (not assigned by NACHA)", False))
        rows.append((code, description, nsf))
    return rows
