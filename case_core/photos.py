"""Photos of cases (现场照片): a small service other front ends reuse (agent desk, action
forms, later the inspectors' phone app).

    service = PhotoService(PhotoFiles(root, max_bytes), engine)
    photo = await service.add(case_id, data, stage="after", actor="dept1", now=now)
    photos = await service.for_case(case_id)          # [Photo, ...], oldest first
    path, content_type = await service.open(photo.id, thumb=False)

`PhotoFiles` is the file side: it accepts only real images (Pillow identifies the bytes,
never the file name), stores each image once under its sha256 (`ab/abcdef….jpg`) with a
thumbnail beside it (`ab/abcdef….thumb.jpg`, EXIF orientation applied, at most
`THUMB_PX` on the long side). The original bytes are kept untouched as evidence.
`case_photos` (migration 0011) holds one row per photo of a case, with its stage:
before (处置前), after (处置后) or report (上报/受理).

Who may see a photo is the caller's business (the web layer checks the case).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters.orm import metadata

__all__ = ["STAGES", "STAGE_LABELS", "THUMB_PX", "PhotoError", "StoredImage", "Photo", "PhotoFiles",
           "PhotoService", "case_photos"]

STAGES = ("before", "after", "report")
STAGE_LABELS = {"before": "处置前", "after": "处置后", "report": "上报"}
THUMB_PX = 320
# Pillow format → (content type, file extension). Anything else is refused.
FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp"),
           "GIF": ("image/gif", "gif")}
MAX_PIXELS = 80_000_000  # refuse decompression bombs well before Pillow's own limit

case_photos = Table(
    "case_photos",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("content_type", String(32), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    Column("uploaded_at", DateTime(timezone=False), nullable=False),
)
Index("ix_case_photos_case", case_photos.c.case_id)


class PhotoError(ValueError):
    """An upload that cannot be stored; `code` for programs, `message_zh` for people."""

    def __init__(self, code: str, message_zh: str, status: int = 422) -> None:
        super().__init__(message_zh)
        self.code, self.message_zh, self.status = code, message_zh, status


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    content_type: str
    ext: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True)
class Photo:
    id: int
    case_id: int
    sha256: str
    stage: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    uploaded_by: str
    uploaded_at: datetime

    @property
    def url(self) -> str:
        return f"/api/photos/{self.id}"

    @property
    def thumb_url(self) -> str:
        return f"/api/photos/{self.id}/thumb"

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage)

    def to_dict(self) -> dict:
        return {"id": self.id, "case_id": self.case_id, "url": self.url, "thumb_url": self.thumb_url,
                "stage": self.stage, "stage_label": self.stage_label, "content_type": self.content_type,
                "width": self.width, "height": self.height, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "uploaded_by": self.uploaded_by,
                "uploaded_at": self.uploaded_at.isoformat(timespec="seconds")}


class PhotoFiles:
    """Content-addressed image files with thumbnails (blocking; run it off the event loop)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _base(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def path(self, sha256: str, ext: str) -> Path:
        return self._base(sha256).with_suffix("." + ext)

    def thumb_path(self, sha256: str) -> Path:
        return self._base(sha256).with_suffix(".thumb.jpg")

    def put(self, data: bytes) -> StoredImage:
        from PIL import Image, ImageOps, UnidentifiedImageError

        if len(data) > self.max_bytes:
            raise PhotoError("too_large", f"照片超过 {self.max_bytes // (1024 * 1024)} MB 上限", 413)
        if not data:
            raise PhotoError("not_image", "文件为空，不是图片")
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
                if fmt not in FORMATS:
                    raise PhotoError("not_image", f"不支持的图片格式（{fmt}），请上传 JPEG、PNG、WebP 或 GIF", 415)
                if probe.width * probe.height > MAX_PIXELS:
                    raise PhotoError("too_large", "图片像素过多", 413)
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                width, height = upright.size
                thumb = upright.convert("RGB")
                thumb.thumbnail((THUMB_PX, THUMB_PX))
        except PhotoError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise PhotoError("not_image", "文件不是可识别的图片（只接受 JPEG、PNG、WebP、GIF）", 415) from None
        content_type, ext = FORMATS[fmt]
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha, ext)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(target, data)
        thumb_target = self.thumb_path(sha)
        if not thumb_target.exists():
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=82)
            _write_atomic(thumb_target, buf.getvalue())
        return StoredImage(sha, content_type, ext, width, height, len(data))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ext(content_type: str) -> str:
    return next((ext for ct, ext in FORMATS.values() if ct == content_type), "bin")


class PhotoService:
    """Photos of cases: files in `PhotoFiles`, rows in `case_photos`."""

    def __init__(self, files: PhotoFiles, engine: AsyncEngine) -> None:
        self.files = files
        self.engine = engine

    @property
    def max_bytes(self) -> int:
        return self.files.max_bytes

    async def add(self, case_id: int, data: bytes, *, stage: str, actor: str, now: datetime) -> Photo:
        if stage not in STAGES:
            raise PhotoError("bad_stage", f"stage 必须是 {'/'.join(STAGES)} 之一", 400)
        stored = await asyncio.get_running_loop().run_in_executor(None, self.files.put, data)
        row = {"case_id": case_id, "sha256": stored.sha256, "stage": stage, "content_type": stored.content_type,
               "width": stored.width, "height": stored.height, "size_bytes": stored.size_bytes,
               "uploaded_by": actor, "uploaded_at": now.replace(microsecond=0)}
        async with self.engine.begin() as conn:
            result = await conn.execute(insert(case_photos).values(**row))
            photo_id = result.inserted_primary_key[0]
        return Photo(id=photo_id, **row)

    async def for_case(self, case_id: int) -> list[Photo]:
        query = select(case_photos).where(case_photos.c.case_id == case_id).order_by(case_photos.c.id)
        async with self.engine.connect() as conn:
            return [Photo(**row._mapping) for row in (await conn.execute(query)).all()]

    async def get(self, photo_id: int) -> Photo | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(case_photos).where(case_photos.c.id == photo_id))).first()
        return Photo(**row._mapping) if row is not None else None

    def file_of(self, photo: Photo, *, thumb: bool = False) -> tuple[Path, str]:
        """The image file to send and its content type."""
        if thumb:
            return self.files.thumb_path(photo.sha256), "image/jpeg"
        return self.files.path(photo.sha256, _ext(photo.content_type)), photo.content_type
