"""Error types for every refusal the protocol package can make.

Verification raises; it never returns a bool. Each domain has one base class and
subclasses that carry what was expected and what was found, so that a report
can say exactly why something was refused.

Every error has a stable ``code`` (the failure codes of docs/protocol.md §11).
"""

from __future__ import annotations


class VerificationError(Exception):
    """Base of everything the protocol package refuses."""

    code = "verification_error"

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        parts = [self.message]
        if self.expected is not None:
            parts.append(f"(want {self.expected!r}, got {self.found!r})")
        elif self.found is not None:
            parts.append(f"(got {self.found!r})")
        return " ".join(parts)


# --- CBOR (docs/protocol.md §2) ---------------------------------------------


class CBORError(VerificationError):
    """The bytes are not the deterministic CBOR this protocol accepts."""

    code = "malformed_record"


class TruncatedError(CBORError):
    """The input ended inside an item."""


class TrailingBytesError(CBORError):
    """Bytes follow the single top-level item."""


class IndefiniteLengthError(CBORError):
    """An indefinite-length item (RFC 8949 §3.2.2) was found."""


class NonCanonicalError(CBORError):
    """An integer, length or size is not in its shortest form."""


class FloatError(CBORError):
    """A floating-point value was found; values are fixed-point integers."""


class ForbiddenTypeError(CBORError):
    """A tag, simple value or nested container appears where it is not allowed."""


class DuplicateKeyError(CBORError):
    """A map key occurs twice."""


class UnsortedKeysError(CBORError):
    """Map keys are not in ascending order (RFC 8949 §4.2.1)."""


class SizeError(CBORError):
    """An item or the whole input exceeds its size limit."""


class InvalidUTF8Error(CBORError):
    """A text string is not valid UTF-8."""


class MalformedError(CBORError):
    """The bytes are not well-formed CBOR (reserved additional information 28-30,
    or an indefinite-length marker on a major type that has none; RFC 8949 §3)."""


class SimpleValueError(ForbiddenTypeError):
    """A simple value (false, true, null, undefined, ...) was found."""


class TagError(ForbiddenTypeError):
    """A tag that is not allowed at this place was found."""


class MapKeyTypeError(ForbiddenTypeError):
    """A map key is not an integer."""


class DepthError(ForbiddenTypeError):
    """Arrays, maps or tags are nested deeper than allowed."""


# --- Records (§2) -------------------------------------------------------------


class RecordError(VerificationError):
    """A payload is well-formed CBOR but not a valid record."""

    code = "malformed_record"


class UnknownFieldError(RecordError):
    """A key in the critical range 0-999 that this version does not define."""


class MissingFieldError(RecordError):
    """A required field is absent."""


class FieldTypeError(RecordError):
    """A field has the wrong CBOR type."""


class FieldRangeError(RecordError):
    """A field's value is outside its bounds."""


class FieldConflictError(RecordError):
    """Fields that exclude each other are both present (e.g. temp and fault)."""


# --- COSE (§3, §5) -------------------------------------------------------------


class CoseError(VerificationError):
    """The envelope does not follow the COSE profile."""

    code = "malformed_record"


class AlgorithmError(CoseError):
    """The algorithm is not the one the profile allows."""


class HeaderError(CoseError):
    """Protected or unprotected header differs from the profile."""


class KidError(HeaderError):
    """The kid is not a valid signer id (docs/protocol.md §1)."""


class EnvelopeError(CoseError):
    """The message is not the profile's envelope: wrong tag, not a 4-element array,
    an element of the wrong type, or a signature or tag of the wrong length."""


class DetachedPayloadError(EnvelopeError):
    """The payload is nil (detached); the profile carries it in the message."""


class SignatureError(VerificationError):
    """The signature does not verify."""

    code = "bad_signature"


class HighSError(SignatureError):
    """The ECDSA s value is above n/2 (the profile demands low-S)."""


class MacError(VerificationError):
    """A COSE_Mac0 tag does not verify."""

    code = "bad_signature"


# --- Keys and trust (§10) -------------------------------------------------------


class KeyTrustError(VerificationError):
    """A key is malformed or not pinned."""

    code = "unknown_key"


class UnknownKeyError(KeyTrustError):
    """No pinned or validly registered key for this signer."""


class RevokedKeyError(KeyTrustError):
    """The key was revoked before this record was logged."""

    code = "revoked_key"


class TrustError(VerificationError):
    """The trust file is missing, empty or malformed."""

    code = "malformed_trust"


# --- Merkle log (§6) -------------------------------------------------------------


class ProofError(VerificationError):
    """A Merkle proof is malformed or does not verify."""

    code = "proof_mismatch"


class ProofShapeError(ProofError):
    """Wrong number of hashes, wrong hash size, or index/size out of range."""


class RootMismatchError(ProofError):
    """The proof reproduces a different root than the one expected."""


class MissingProofError(ProofError):
    """A record has no inclusion proof to a verified checkpoint."""

    code = "missing_proof"


# --- Per-signer hash chains (§4) -------------------------------------------------


class ChainError(VerificationError):
    """A signer's records do not form one unbroken chain."""

    code = "broken_chain"


class SequenceGapError(ChainError):
    """Sequence numbers are missing between two records of one signer."""

    code = "sequence_gap"


# --- Checkpoints and notes (§7) ----------------------------------------------------


class NoteError(VerificationError):
    """A signed note or checkpoint is malformed."""

    code = "bad_checkpoint"


class NoteSignatureError(NoteError):
    """A pinned key's signature on a note does not verify."""


class UnverifiedNoteError(NoteError):
    """No signature from any pinned key was found on the note."""

    code = "unknown_log_key"


class MalformedNoteError(NoteError):
    """The text is not a well-formed C2SP signed note (c2sp.org/signed-note): no
    blank line before the signatures, a bad signature line, a control character,
    a duplicated key, more than 16 KiB or more than 100 signatures."""


class MalformedCheckpointError(NoteError):
    """A note body is not a valid checkpoint (c2sp.org/tlog-checkpoint, §7): bad
    origin, tree size with leading zeros, root hash not 32 bytes of base64, ..."""


class CheckpointOriginError(NoteError):
    """A checkpoint signer's key name differs from the checkpoint's origin."""


class NoteKeyError(NoteError):
    """A verifier key (vkey) or signer key (skey) string is malformed, uses an
    unsupported signature type, or a set of verifier keys is empty or ambiguous."""

    code = "malformed_trust"


class InsufficientCosignaturesError(VerificationError):
    """A verified checkpoint carries valid cosignatures from fewer distinct pinned
    witnesses than the trust file's quorum (§7.1, §11 step 2)."""

    code = "insufficient_cosignatures"


class InconsistentCheckpointsError(VerificationError):
    """Two checkpoints of one log cannot both be true."""

    code = "inconsistent_checkpoints"


# --- Anchors (§8) ------------------------------------------------------------------


class AnchorError(VerificationError):
    """An anchor receipt fails its checks."""

    code = "bad_anchor"


class UnanchoredCheckpointError(AnchorError):
    """A checkpoint is neither anchored nor consistent with an anchored one."""

    code = "unanchored_checkpoint"


class AnchorUnverifiableError(AnchorError):
    """An anchor could not be checked (for example, an EVM anchor without RPC)."""

    code = "anchor_unverifiable"


class MalformedReceiptError(AnchorError):
    """A receipt's JSON is not the shape of §8.1 / §8.2 (missing, extra or
    mistyped field, hex or base64 not in canonical form, value out of range)."""


class AnchorSignatureError(AnchorError):
    """A local ledger entry's signature does not verify under the pinned key."""


class AnchorMismatchError(AnchorError):
    """What the ledger holds differs from what the receipt or checkpoint says
    (checkpoint hash, event fields, transaction status, block hash)."""


class AnchorChainError(AnchorError):
    """Receipts of one local ledger do not link (``prev``) or disagree at one index."""


class AnchorConfirmationsError(AnchorError):
    """An EVM anchor is buried under fewer blocks than its receipt claims."""


# --- Bundles (§9) ------------------------------------------------------------------


class BundleError(VerificationError):
    """The bundle does not match its schema."""

    code = "malformed_bundle"


# --- bundle-level findings of the verifier (§11) -----------------------------------------


class DuplicateEntryError(VerificationError):
    """One (log, index) appears twice among a bundle's records (§9)."""

    code = "duplicate_entry"


class OutOfScopeError(VerificationError):
    """A registry signed about a device, place or GTIN it is not the authority for (§10)."""

    code = "out_of_scope"


class SubjectMismatchError(VerificationError):
    """The bundle claims another item than its signed commission scan (§11 step 13)."""

    code = "subject_mismatch"
