"""What storing the archive costs: list prices per storage class for AWS S3, Cloudflare R2 and Backblaze B2.

The defaults are the providers' published list prices (US regions, December 2026) and can be overridden in the
``storage_prices`` section of ``tiklive.yaml``: prices change and contracts differ. Every price is in US dollars.

The rules that make small objects expensive in cold classes are part of each class:

* ``min_object_bytes``: S3 Standard-IA and Glacier Instant Retrieval bill every object as at least 128 KiB, so a
  3 KiB response costs as much as a 128 KiB one there;
* ``overhead_bytes``: S3 Glacier Flexible Retrieval and Deep Archive add 40 KiB of billed index per object
  (32 KiB at the cold rate, 8 KiB at Standard's; modelled here as 40 KiB at the class's rate);
* ``transition_per_1000``: every lifecycle transition is one request per object;
* ``min_days``: an object deleted earlier is billed for the whole minimum.

Compaction (``tiklive_assets.compliance.compaction``) exists because of these rules: one bundle per endpoint and
day turns tens of thousands of tiny objects into a few large ones before anything is tiered.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Provider = Literal["s3", "r2", "b2"]
PROVIDERS: tuple[Provider, ...] = ("s3", "r2", "b2")
GB = 1024**3  # providers bill GB-months of 2^30 bytes
KIB = 1024


class StorageClassPrice(BaseModel):
    """One storage class of one provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gb_month: float = Field(ge=0, description="storage, per GB-month")
    put_per_1000: float = Field(0.0, ge=0, description="writes (PUT, COPY, POST, LIST), per 1,000 requests")
    get_per_1000: float = Field(0.0, ge=0, description="reads (GET, HEAD), per 1,000 requests")
    retrieval_per_gb: float = Field(0.0, ge=0, description="data retrieval, per GB read back")
    transition_per_1000: float = Field(0.0, ge=0, description="lifecycle transitions into this class, per 1,000")
    min_object_bytes: int = Field(0, ge=0, description="each object is billed as at least this many bytes")
    overhead_bytes: int = Field(0, ge=0, description="billed bytes added to every object (index metadata)")
    min_days: int = Field(0, ge=0, description="minimum storage duration billed")

    def billed_bytes(self, size: int) -> int:
        """The bytes one object of ``size`` bytes is billed as in this class."""
        return max(size, self.min_object_bytes) + self.overhead_bytes


class ProviderPrices(BaseModel):
    """The classes of one provider, and which of them the archive's hot, warm and cold tiers map to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: dict[str, StorageClassPrice]
    hot: str = Field(description="storage class of new objects")
    warm: str = Field(description="storage class after the hot period")
    cold: str = Field(description="storage class after the warm period")

    @model_validator(mode="after")
    def _tiers_exist(self) -> ProviderPrices:
        for tier in ("hot", "warm", "cold"):
            name = getattr(self, tier)
            if name not in self.classes:
                raise ValueError(f"{tier}={name!r} is not one of the classes given ({', '.join(self.classes)})")
        return self

    def tier(self, tier: Literal["hot", "warm", "cold"]) -> StorageClassPrice:
        return self.classes[getattr(self, tier)]


def _s3() -> ProviderPrices:
    return ProviderPrices(
        classes={
            "STANDARD": StorageClassPrice(gb_month=0.023, put_per_1000=0.005, get_per_1000=0.0004),
            "STANDARD_IA": StorageClassPrice(
                gb_month=0.0125,
                put_per_1000=0.01,
                get_per_1000=0.001,
                retrieval_per_gb=0.01,
                transition_per_1000=0.01,
                min_object_bytes=128 * KIB,
                min_days=30,
            ),
            "GLACIER_IR": StorageClassPrice(
                gb_month=0.004,
                put_per_1000=0.02,
                get_per_1000=0.01,
                retrieval_per_gb=0.03,
                transition_per_1000=0.02,
                min_object_bytes=128 * KIB,
                min_days=90,
            ),
            "GLACIER": StorageClassPrice(
                gb_month=0.0036,
                put_per_1000=0.03,
                get_per_1000=0.0004,
                retrieval_per_gb=0.01,
                transition_per_1000=0.03,
                overhead_bytes=40 * KIB,
                min_days=90,
            ),
            "DEEP_ARCHIVE": StorageClassPrice(
                gb_month=0.00099,
                put_per_1000=0.05,
                get_per_1000=0.0004,
                retrieval_per_gb=0.02,
                transition_per_1000=0.05,
                overhead_bytes=40 * KIB,
                min_days=180,
            ),
        },
        hot="STANDARD",
        warm="STANDARD_IA",
        cold="GLACIER",
    )


def _r2() -> ProviderPrices:
    return ProviderPrices(
        classes={
            "STANDARD": StorageClassPrice(gb_month=0.015, put_per_1000=0.0045, get_per_1000=0.00036),
            "INFREQUENT_ACCESS": StorageClassPrice(
                gb_month=0.01,
                put_per_1000=0.009,
                get_per_1000=0.0009,
                retrieval_per_gb=0.01,
                transition_per_1000=0.009,
                min_days=30,
            ),
        },
        hot="STANDARD",
        warm="INFREQUENT_ACCESS",
        cold="INFREQUENT_ACCESS",
    )


def _b2() -> ProviderPrices:
    return ProviderPrices(
        classes={"STANDARD": StorageClassPrice(gb_month=0.006, put_per_1000=0.0, get_per_1000=0.0004)},
        hot="STANDARD",
        warm="STANDARD",
        cold="STANDARD",
    )


class StoragePrices(BaseModel):
    """Prices of the three providers the archive can live on; any of them can be replaced in ``tiklive.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    s3: ProviderPrices = Field(default_factory=_s3)
    r2: ProviderPrices = Field(default_factory=_r2)
    b2: ProviderPrices = Field(default_factory=_b2)

    def provider(self, name: Provider) -> ProviderPrices:
        return getattr(self, name)


DEFAULT_PRICES = StoragePrices()
