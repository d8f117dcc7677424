"""Helpers for tests that speak DICOMweb over real HTTP: Part 10 bytes, multipart bodies in and out."""

from __future__ import annotations

import io
import secrets
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pydicom


def part10(ds: pydicom.Dataset) -> bytes:
    """A dataset (with its file meta) as the bytes of a DICOM Part 10 file."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def multipart_body(blobs: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = "test-" + secrets.token_hex(8)
    chunks = []
    for blob in blobs:
        chunks.append(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + blob + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


def stow(url: str, blobs: list[bytes], study: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    body, content_type = multipart_body(blobs)
    target = f"{url}/studies" + (f"/{study}" if study else "")
    return httpx.post(target, content=body, headers={"Content-Type": content_type, **(headers or {})}, timeout=60)


def split_multipart(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Parts of a multipart/related response as (headers, payload) with the standard library parser."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    assert message.is_multipart(), response.headers["content-type"]
    out = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        out.append(({k.lower(): v for k, v in part.items()}, payload if payload is not None else b""))
    return out


def failure_reasons(body: dict) -> list[int]:
    return [item["00081197"]["Value"][0] for item in body.get("00081198", {}).get("Value", [])]
