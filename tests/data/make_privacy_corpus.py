"""Makes tests/data/privacy_corpus.jsonl: labelled snippets in English, French and Spanish,
personal data of individuals (by category) and ordinary programme text (negatives, many of
them close calls: figures, dates, places, organisations, partner names).

    python tests/data/make_privacy_corpus.py > tests/data/privacy_corpus.jsonl

Seeded, so the file is reproducible; the snippets mix hand-written templates with values
drawn from lists, and each line names its language and category.
"""

from __future__ import annotations

import json
import random
import sys

R = random.Random(20261123)
FIRST = ["Maria", "Ahmed", "Rosa", "Jean", "Fatima", "Luis", "Amina", "José", "Nadia", "Omar",
         "Carmen", "Pierre", "Aïcha", "Juan", "Grace", "Mohammed", "Lucía", "Hélène", "Kofi",
         "Ana", "Ibrahim", "Sofía", "Moussa", "Elena", "Yusuf", "Mariam", "Diego", "Awa"]
LAST = ["Lopez Garcia", "Hassan", "Martinez", "Dupont", "Diallo", "Fernández", "Okafor",
        "Traoré", "Haddad", "Ramírez", "Mensah", "Nguyen", "Benali", "Camara", "Morales",
        "Kouyaté", "Rodríguez", "Petit", "Sow", "Castillo", "Bakr", "Herrera", "Ndiaye"]
NATION_EN = ["Honduran", "Guatemalan", "Afghan", "Syrian", "Malian", "Filipino", "Venezuelan"]
COUNTRY = ["Honduras", "Guatemala", "Afghanistan", "Syria", "Mali", "Senegal", "Venezuela",
           "Nigeria", "Ecuador", "Haiti", "Morocco", "Tajikistan"]
NAT_ES = ["hondureña", "guatemalteca", "venezolana", "salvadoreña", "colombiana"]
NAT_FR = ["malienne", "sénégalaise", "ivoirienne", "guinéenne", "haïtienne"]
MONTH_EN = ["January", "March", "May", "July", "September", "November", "Feb", "Oct"]
MONTH_FR = ["janvier", "mars", "mai", "juillet", "septembre", "novembre", "février"]
MONTH_ES = ["enero", "marzo", "mayo", "julio", "septiembre", "noviembre", "febrero"]
DOMAINS = ["gmail.com", "yahoo.fr", "hotmail.com", "outlook.es", "protonmail.com",
           "mail.ru", "iom.int", "yahoo.com"]


def name() -> str:
    return f"{R.choice(FIRST)} {R.choice(LAST)}"


def age() -> int:
    return R.randint(4, 71)


def digits(n: int) -> str:
    return "".join(str(R.randint(0, 9)) for _ in range(n))


def passport() -> str:
    return R.choice([f"{R.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{digits(7)}",
                     f"{digits(2)}{R.choice(['AB', 'CV', 'FR', 'XK'])}{digits(5)}",
                     f"{R.choice(['P', 'G', 'E'])}{digits(8)}", digits(9)])


def email() -> str:
    first, last = R.choice(FIRST).lower(), R.choice(LAST).split()[0].lower()
    return R.choice([f"{first}.{last}@{R.choice(DOMAINS)}", f"{first}{R.randint(1, 99)}@"
                     f"{R.choice(DOMAINS)}", f"{first}_{last}@{R.choice(DOMAINS)}",
                     f"{first} (at) {R.choice(DOMAINS).replace('.', ' (dot) ')}"])


def phone_intl() -> str:
    return R.choice([f"+63 917 {digits(3)} {digits(4)}", f"+33 6 {digits(2)} {digits(2)} "
                     f"{digits(2)} {digits(2)}", f"+34 6{digits(2)} {digits(3)} {digits(3)}",
                     f"+52 55 {digits(4)} {digits(4)}", f"+221 77 {digits(3)} {digits(2)} "
                     f"{digits(2)}", f"+1 (202) 555-{digits(4)}", f"0033 7 {digits(2)} "
                     f"{digits(2)} {digits(2)} {digits(2)}", f"+504 9{digits(3)}-{digits(4)}",
                     f"+992 93 {digits(3)} {digits(4)}", f"+44 7700 9{digits(5)}"])


def phone_local() -> str:
    return R.choice([f"0{digits(1)} {digits(2)} {digits(2)} {digits(2)} {digits(2)}",
                     f"55 {digits(4)} {digits(4)}", f"9{digits(3)}-{digits(4)}",
                     f"(0{digits(2)}) {digits(3)} {digits(4)}", f"{digits(3)} {digits(3)} "
                     f"{digits(3)}"])


def date(lang: str) -> str:
    d, y = R.randint(1, 28), R.randint(1950, 2021)
    if R.random() < 0.4:
        return R.choice([f"{d:02}/{R.randint(1, 12):02}/{y}", f"{y}-{R.randint(1, 12):02}-"
                         f"{d:02}", f"{d}.{R.randint(1, 12)}.{y}"])
    if lang == "en":
        return R.choice([f"{d} {R.choice(MONTH_EN)} {y}", f"{R.choice(MONTH_EN)} {d}, {y}"])
    if lang == "fr":
        return f"{d} {R.choice(MONTH_FR)} {y}"
    return f"{d} de {R.choice(MONTH_ES)} de {y}"


POSITIVE = {
    "e-mail address": {
        "en": ["Contact the beneficiary at {email} for follow-up.", "Her e-mail is {email}.",
               "Case worker notes: {email}", "{name} can be reached on {email}"],
        "fr": ["Le bénéficiaire peut être contacté à {email}.", "Courriel : {email}",
               "Adresse électronique de la personne : {email}"],
        "es": ["Correo del beneficiario: {email}", "Escribir a {email} para el seguimiento.",
               "La persona dejó su correo {email}"]},
    "phone number": {
        "en": ["Reached by phone at {intl}.", "Mobile: {local}", "His WhatsApp is {intl}",
               "Tel. {local} (family)", "Call {intl} to confirm the return date."],
        "fr": ["Téléphone : {local}", "Numéro de portable : {intl}",
               "Joignable au {intl} après 18 h.", "Tél. {local}"],
        "es": ["Teléfono: {local}", "Móvil {intl}", "Número de celular: {local}",
               "Contactar al {intl} en Tegucigalpa."]},
    "passport or identity number": {
        "en": ["Passport number {passport} was copied at the border.",
               "Passport No. {passport}", "National ID {passport} recorded at intake.",
               "Identity card: {passport}", "UNHCR case number {passport}",
               "Her residence permit {passport} expires soon."],
        "fr": ["Numéro de passeport : {passport}", "Passeport n° {passport}",
               "Carte d'identité {passport} vérifiée.", "Titre de séjour {passport}",
               "CNI {passport} présentée au guichet."],
        "es": ["Pasaporte número {passport}", "Número de pasaporte: {passport}",
               "DNI {passport}", "Cédula {passport} verificada en el albergue.",
               "Documento de identidad {passport}", "CURP {passport}"]},
    "birth date": {
        "en": ["Born on {date}.", "Date of birth: {date}", "DOB {date}",
               "{name}, born {date}, arrived alone."],
        "fr": ["Née le {date} à Bamako.", "Né le {date}.", "Date de naissance : {date}"],
        "es": ["Nacida el {date}.", "Fecha de nacimiento: {date}", "Nacido el {date} en "
               "San Pedro Sula."]},
    "name of an individual": {
        "en": ["{name}, {age}, from {country}, was assisted at the centre.",
               "{name} ({age}) received legal counselling.",
               "The migrant {name} asked for family tracing.",
               "{name}, a {nation} national, was returned on Tuesday.",
               "Mr. {last} reported abuse by a recruiter.", "Full name: {name}",
               "{name}, aged {age}, travels with two children.",
               "Ms {last} shared her story with the team."],
        "fr": ["{name}, {age} ans, originaire du {country}, a été accueillie.",
               "Le migrant {name} a demandé une assistance au retour.",
               "Mme {last} a été orientée vers un service juridique.",
               "{name}, de nationalité {nat_fr}, a été reçue par l'équipe.",
               "Nom de famille : {last}", "La victime {name} a porté plainte."],
        "es": ["{name}, {age} años, de {country}, llegó al albergue.",
               "La migrante {name} solicitó apoyo psicológico.",
               "Sra. {last} fue referida a la clínica.",
               "{name}, de nacionalidad {nat_es}, fue retornada.",
               "Nombre completo: {name}", "El solicitante {name} presentó su caso."]},
}

NEGATIVE = {
    "en": ["IOM, ILO and UN Women trained {n} officials on migration data in {country}.",
           "The programme reached {big} beneficiaries in {country}, disaggregated by sex and "
           "age.", "Total budget USD {money} over {months} months, with 7% support cost.",
           "The annual narrative report is due by 31 March {year}.",
           "The Ministry of Labour and the National Statistics Office co-chair the group.",
           "A national data-governance strategy was adopted in {year}.",
           "{country}, {n} partners trained on GCM objective {obj}.",
           "Outcome {obj}: {n}% of returnees access reintegration services.",
           "The Resident Coordinator's office endorsed the note on 12 {month} {year}.",
           "Phone and internet access for migrants improved in {n} border posts.",
           "Contact points were designated in {n} municipalities of {country}.",
           "Indicator 1.{obj}: number of officials trained (baseline 0, target {n}).",
           "The Government of {country} endorsed the proposal; letter dated {year}-03-01.",
           "Passport offices in {n} provinces now issue documents within 30 days.",
           "Birth registration of migrant children rose to {n}% in the pilot districts.",
           "Consular staff from {country} and the Philippines met in Manila in {year}.",
           "UNHCR, UNICEF and WHO will co-implement the child protection component.",
           "Remittance costs fell to {n}% through the corridor with {country}.",
           "Objective {obj} of the Global Compact guides the whole-of-society approach.",
           "The steering committee meets on 6 February {year} in Geneva.",
           "Civil society partners include Caritas, the Red Cross and migrant associations.",
           "Expenditure reached USD {money} by 31 December {year} (provisional).",
           "The hotline answered {big} calls, all figures aggregated monthly."],
    "fr": ["L'OIM et l'OIT ont formé {n} agents sur les données migratoires au {country}.",
           "Le programme a atteint {big} bénéficiaires, ventilés par sexe et par âge.",
           "Budget total de {money} USD sur {months} mois, frais de soutien de 7 % inclus.",
           "Le rapport narratif annuel est attendu le 31 mars {year}.",
           "Le ministère du Travail et l'Institut national de la statistique pilotent le "
           "groupe.", "Une stratégie nationale de gouvernance des données a été adoptée en "
           "{year}.", "Les bureaux des passeports de {n} provinces délivrent désormais les "
           "documents en 30 jours.", "Objectif {obj} du Pacte mondial : {n} % des rapatriés "
           "accèdent à la réintégration.", "Le Coordonnateur résident a approuvé la note le "
           "12 {month_fr} {year}.", "Des points focaux ont été désignés dans {n} communes du "
           "{country}.", "La société civile, dont Caritas et la Croix-Rouge, participe au "
           "comité.", "Les dépenses ont atteint {money} USD au 31 décembre {year}.",
           "Le numéro vert a reçu {big} appels, données agrégées par mois.",
           "Le Gouvernement du {country} a approuvé la proposition par lettre en {year}."],
    "es": ["La OIM y la OIT capacitaron a {n} funcionarios en datos migratorios en "
           "{country}.", "El programa llegó a {big} beneficiarios, desglosados por sexo y "
           "edad.", "Presupuesto total de USD {money} en {months} meses, con 7 % de costos "
           "de apoyo.", "El informe narrativo anual vence el 31 de marzo de {year}.",
           "El Ministerio de Trabajo y el Instituto Nacional de Estadística coordinan el "
           "grupo.", "Se adoptó una estrategia nacional de gobernanza de datos en {year}.",
           "Las oficinas de pasaportes de {n} provincias emiten documentos en 30 días.",
           "Objetivo {obj} del Pacto Mundial: {n} % de los retornados acceden a la "
           "reintegración.", "La Coordinadora Residente respaldó la nota el 12 de "
           "{month_es} de {year}.", "Se designaron puntos focales en {n} municipios de "
           "{country}.", "La sociedad civil, incluida Cáritas y la Cruz Roja, integra el "
           "comité.", "El gasto alcanzó USD {money} al 31 de diciembre de {year}.",
           "La línea de ayuda atendió {big} llamadas, con datos agregados por mes.",
           "El Gobierno de {country} y el de México firmaron el acuerdo en {year}."],
}


def fill(t: str, lang: str) -> str:
    first, last = R.choice(FIRST), R.choice(LAST)
    return t.format(
        name=f"{first} {last}", last=last, age=age(), country=R.choice(COUNTRY),
        nation=R.choice(NATION_EN), nat_es=R.choice(NAT_ES), nat_fr=R.choice(NAT_FR),
        email=email(), intl=phone_intl(), local=phone_local(), passport=passport(),
        date=date(lang), n=R.randint(2, 950), big=f"{R.randint(1, 300):,}{R.randint(0, 999):03}",
        money=f"{R.randint(1, 3):,}{R.randint(0, 999):03},{R.randint(0, 999):03}",
        months=R.choice([12, 18, 24, 30, 36]), year=R.randint(2019, 2029),
        obj=R.randint(1, 23), month=R.choice(MONTH_EN), month_fr=R.choice(MONTH_FR),
        month_es=R.choice(MONTH_ES))


def main() -> None:
    seen: set[str] = set()
    rows = []
    for category, by_lang in POSITIVE.items():
        for lang, templates in by_lang.items():
            for i in range(25):  # 75 a category, 375 in all
                text = fill(templates[i % len(templates)], lang)
                if text not in seen:
                    seen.add(text)
                    rows.append({"text": text, "lang": lang, "personal": True,
                                 "category": category})
    for lang, templates in NEGATIVE.items():
        for i in range(160):
            text = fill(templates[i % len(templates)], lang)
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "lang": lang, "personal": False,
                             "category": "none"})
    for r in rows:
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
