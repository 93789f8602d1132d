"""Reference vocabulary the contracts speak in: UN Network on Migration members, GCM
objectives, the Fund's thematic areas, ISO 3166-1 country codes and regions. Rule parameters
(which of these a service accepts, and limits) are each service's settings, not here."""

from __future__ import annotations

# The Network's Executive Committee (core members) and extended members. Codes are upper case.
CORE_MEMBERS = {
    "ILO": "International Labour Organization",
    "IOM": "International Organization for Migration",
    "OHCHR": "Office of the UN High Commissioner for Human Rights",
    "UNDESA": "UN Department of Economic and Social Affairs",
    "UNDP": "UN Development Programme",
    "UNICEF": "UN Children's Fund",
    "UNHCR": "UN High Commissioner for Refugees",
    "UNODC": "UN Office on Drugs and Crime",
}
EXTENDED_MEMBERS = {
    "UNCTAD": "UN Conference on Trade and Development",
    "WHO": "World Health Organization",
    "UN-WOMEN": "UN Women",
    "UNFPA": "UN Population Fund",
    "FAO": "Food and Agriculture Organization",
    "WFP": "World Food Programme",
    "UNEP": "UN Environment Programme",
    "UN-HABITAT": "UN-Habitat",
    "UNESCO": "UN Educational, Scientific and Cultural Organization",
    "UNITAR": "UN Institute for Training and Research",
    "UNECE": "UN Economic Commission for Europe",
    "ECA": "UN Economic Commission for Africa",
    "ECLAC": "UN Economic Commission for Latin America and the Caribbean",
    "ESCAP": "UN Economic and Social Commission for Asia and the Pacific",
    "ESCWA": "UN Economic and Social Commission for Western Asia",
    "UNOPS": "UN Office for Project Services",
    "UNAIDS": "Joint UN Programme on HIV/AIDS",
    "UNRWA": "UN Relief and Works Agency",
    "ITC": "International Trade Centre",
    "ICAO": "International Civil Aviation Organization",
    "UNV": "UN Volunteers",
}
NETWORK_MEMBERS = {**CORE_MEMBERS, **EXTENDED_MEMBERS}

GCM_OBJECTIVES = {
    1: "Accurate and disaggregated migration data",
    2: "Reduce adverse drivers of migration",
    3: "Timely information at all stages of migration",
    4: "Legal identity and documentation",
    5: "More regular pathways",
    6: "Fair recruitment and decent work",
    7: "Reduce vulnerabilities",
    8: "Save lives; missing migrants",
    9: "Counter smuggling of migrants",
    10: "End trafficking in persons",
    11: "Integrated border management",
    12: "Predictable procedures, screening and referral",
    13: "Detention only as a last resort",
    14: "Consular protection",
    15: "Access to basic services",
    16: "Inclusion and social cohesion",
    17: "End discrimination; evidence-based discourse",
    18: "Skills and their recognition",
    19: "Diaspora contributions to development",
    20: "Cheaper, safer remittances",
    21: "Safe return, readmission and reintegration",
    22: "Portable social security",
    23: "International cooperation and partnerships",
}

THEMATIC_AREAS = {
    1: "Fact-based, data-driven migration discourse, policy and planning",
    2: "Protecting migrants' human rights, safety and well-being",
    3: "Addressing irregular migration, border management and transnational crime",
    4: "Regular migration, decent work and the development effects of mobility",
    5: "Social inclusion and integration of migrants",
}

# Default objective clusters per thematic area (a parameter: services take it from settings).
DEFAULT_AREA_OBJECTIVES: dict[int, list[int]] = {
    1: [1, 3, 7, 17, 23],
    2: [2, 7, 8, 12, 13, 14],
    3: [4, 9, 10, 11, 21],
    4: [5, 6, 18, 19, 20, 22],
    5: [15, 16, 17],
}

# ISO 3166-1 alpha-2 (officially assigned codes)
ISO_COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW
""".split())

# Regions a multi-country or regional programme may name (UN M49 regions and sub-regions, and
# the Fund's own groupings). A parameter too: services may extend it.
DEFAULT_REGIONS = frozenset({
    "Global", "Africa", "Americas", "Asia", "Europe", "Oceania",
    "Northern Africa", "Sub-Saharan Africa", "Eastern Africa", "Middle Africa",
    "Southern Africa", "Western Africa", "Latin America and the Caribbean", "Caribbean",
    "Central America", "South America", "Northern America", "Central Asia", "Eastern Asia",
    "South-eastern Asia", "Southern Asia", "Western Asia", "Eastern Europe", "Northern Europe",
    "Southern Europe", "Western Europe", "Australia and New Zealand", "Melanesia",
    "Micronesia", "Polynesia", "Horn of Africa", "Sahel", "Western Balkans", "Middle East",
    "Pacific Islands", "Gulf Cooperation Council",
})

# Our regions in IATI's Region codelist (vocabulary 1, OECD DAC regional codes), for the
# open-data export; a region without a DAC counterpart (Global) is 998, developing
# countries unspecified.
IATI_REGION = {
    "Global": "998", "Africa": "298", "Northern Africa": "189", "Sub-Saharan Africa": "289",
    "Eastern Africa": "289", "Middle Africa": "289", "Southern Africa": "289",
    "Western Africa": "289", "Horn of Africa": "289", "Sahel": "289",
    "Americas": "498", "Latin America and the Caribbean": "498", "Caribbean": "380",
    "Central America": "389", "Northern America": "389", "South America": "489",
    "Asia": "798", "Central Asia": "619", "Southern Asia": "679", "Eastern Asia": "789",
    "South-eastern Asia": "789", "Western Asia": "589", "Middle East": "589",
    "Gulf Cooperation Council": "589", "Europe": "89", "Eastern Europe": "89",
    "Northern Europe": "89", "Southern Europe": "89", "Western Europe": "89",
    "Western Balkans": "89", "Oceania": "889", "Australia and New Zealand": "889",
    "Melanesia": "889", "Micronesia": "889", "Polynesia": "889", "Pacific Islands": "889",
}

# ISO 4217 currency codes that contributions may be made in (active codes).
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH
UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
""".split())
