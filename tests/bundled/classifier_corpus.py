"""A seeded, held-back set of generated documents for the document classifier.

The document templates below are written apart from ``phrases.json`` (the classifier's
training phrases): they use the words a real document of each class has, in their own
sentences, with random names, numbers and filler lines around them.
"""

from __future__ import annotations

import random

FILLER = [
    "Please keep this document for your records.",
    "Page {n} of {m}",
    "Questions? Call us at +1 555 {n}{m}{n}.",
    "Generated on 2026-{m:02d}-{n:02d}.",
    "{company}, {n} Main Street, Springfield",
]
COMPANIES = ["Acme Ltd", "Globex GmbH", "Initech", "Umbrella Corp", "Hooli", "Stark Supplies"]

TEMPLATES: dict[str, list[str]] = {
    "invoice": [
        "INVOICE #{n}\nBill to: {company}\nAmount due: {amt} EUR by {date}\nVAT 19 %",
        "Tax invoice {n} from {company}. Subtotal {amt}, total due within 30 days.",
    ],
    "credit-note": [
        "CREDIT NOTE {n}\nThis credit note refers to original invoice {m}.\nAmount credited: {amt}",
        "Credit memo for {company}: we refund {amt} for returned goods.",
    ],
    "receipt": [
        "{company}\nReceipt {n}\n2 x coffee {amt}\nPaid by card\nThank you for your purchase!",
        "Store receipt - cashier {m} - cash {amt} - change given 0.40",
    ],
    "bank-statement": [
        "Account statement {date}\nIBAN DE{n}{m}\nOpening balance {amt}\nClosing balance {amt2}",
        "Your bank statement for the statement period ending {date}. Direct debit {company} {amt}",
    ],
    "contract": [
        "SERVICE AGREEMENT between {company} and the Client. The parties hereby agree "
        "to the obligations below. Governing law: New York. Termination with 90 days notice.",
        "This contract is made on {date}. In witness whereof the parties sign below.",
    ],
    "nda": [
        "MUTUAL NON-DISCLOSURE AGREEMENT\nThe receiving party shall not disclose any "
        "confidential information of the disclosing party ({company}).",
        "NDA {n}: confidentiality obligations survive for {m} years.",
    ],
    "amendment": [
        "FIRST AMENDMENT to the agreement of {date}. Section {m} is hereby amended and "
        "replaced in its entirety. All other terms remain in full force.",
        "Amendment No. {n}: this amendment amends the agreement with {company}.",
    ],
    "multispectral-image": [
        "Flight {n} orthomosaic: 5 spectral bands (blue, green, red, red edge, NIR band).",
        "Multispectral drone imagery, reflectance calibrated, field {m}.",
    ],
    "sensor-readings": [
        "field station {m}, sensor id S{n}: soil moisture 23 %, humidity 61 %, rainfall mm 4",
        "Probe {n} temperature reading {amt} C at {date}",
    ],
    "machine-telemetry": [
        "machine id M{n}; spindle speed {n} rpm; vibration 0.{m} mm/s; cycle count {amt}",
        "PLC telemetry export: uptime {m} h, error code E{n}",
    ],
    "inspection-image": [
        "Visual inspection at inspection station {m}: defect found (scratch) on part {n}.",
        "Camera {m} image of part {n}: surface finish acceptable, no defect.",
    ],
    "measurement-log": [
        "Measurement log part {n}\nnominal 12.00 mm, measured value 12.0{m} mm, deviation 0.0{m}",
        "Dimension check with caliper: within tolerance ({amt} mm).",
    ],
    "purchase-order": [
        "PURCHASE ORDER\nPO number {n}\nBuyer: {company}\nShip to: warehouse {m}"
        "\nQuantity ordered: {m}",
        "Order date {date}. Please supply {m} units, requested delivery in 2 weeks.",
    ],
    "delivery-note": [
        "DELIVERY NOTE {n}\nCarrier: DHL\nDelivered quantity: {m}\nReceived by: J. Smith",
        "Packing slip / dispatch note for {company}, goods received in good order.",
    ],
    "bill-of-lading": [
        "BILL OF LADING {n}\nShipper: {company}\nConsignee: Initech\nVessel: MSC Anna",
        "Port of loading Hamburg, port of discharge Shanghai"
        ", container number MSCU{n}, freight prepaid",
    ],
    "inventory-count": [
        "Stocktake {date}: bin location A-{m}, counted quantity {n}, counted by K. Lee",
        "Inventory count sheet, physical count of aisle {m}",
    ],
    "stock-ledger": [
        "Stock ledger item {n}: goods in {m}, goods out {m}, running balance {amt}",
        "Stock movement report, adjustment -{m}, stock on hand {n}",
    ],
    "sales-export": [
        "order id,customer email,units sold,net sales\n{n},a@b.example,{m},{amt}",
        "Sales report {date}: revenue {amt}, shop order count {n}",
    ],
    "pos-transactions": [
        "terminal,transaction id,tender type,amount\nT{m},{n},card,{amt}",
        "Point of sale register {m} export, cashier id {n}, till closed at 18:00",
    ],
    "medical-record": [
        "Patient: J. Doe, date of birth 1970-01-0{m}\nDiagnosis: hypertension"
        "\nMedication: ramipril",
        "Clinical notes {date}: medical history reviewed, allergies none, treatment plan agreed.",
    ],
    "lab-result": [
        "LABORATORY REPORT\nSpecimen: blood sample {n}"
        "\nHemoglobin 13.{m} g/dL (reference range 12-16)",
        "Lab result {n}: glucose {amt} mg/dL, test result within reference range.",
    ],
    "referral-letter": [
        "Dear colleague,\nI am referring Mrs. Smith for further assessment by a specialist."
        "\nKind regards",
        "Referral {n}: patient referred to cardiology at {company}.",
    ],
}


def generate(per_class: int = 20, seed: int = 14) -> list[tuple[str, str]]:
    """Return ``per_class`` (text, class) pairs per class, the same for the same seed."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for label, templates in sorted(TEMPLATES.items()):
        for i in range(per_class):
            values = {
                "n": rng.randint(1, 9999),
                "m": rng.randint(1, 12),
                "amt": f"{rng.uniform(1, 9999):.2f}",
                "amt2": f"{rng.uniform(1, 9999):.2f}",
                "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "company": rng.choice(COMPANIES),
            }
            body = templates[i % len(templates)].format(**values)
            lines = [body]
            for _ in range(rng.randint(0, 3)):
                filler = rng.choice(FILLER).format(**values)
                lines.insert(rng.randint(0, len(lines)), filler)
            out.append(("\n".join(lines), label))
    return out


def accuracy(per_class: int = 20, seed: int = 14) -> tuple[float, list[tuple[str, str, str]]]:
    """Return the classifier's top-1 accuracy on the set and its misses."""
    from paulyops.bundled.document_classifier.agent import classify

    misses = []
    docs = generate(per_class, seed)
    for text, label in docs:
        got = classify(text)["label"]
        if got != label:
            misses.append((label, got, text))
    return 1 - len(misses) / len(docs), misses
