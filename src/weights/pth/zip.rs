//! The minimal zip reading `torch.save` archives need: the central directory (with zip64 for
//! archives and entries past 4 GiB) and the local headers that locate each entry's data.
//!
//! PyTorch writes every entry STORED, so data is borrowed straight from the file. Archives
//! that were re-zipped with DEFLATE (some published checkpoints are) are inflated; any other
//! compression method, encryption or multi-disk archive is an error. CRCs are not checked:
//! torch itself does not check them either, and it would cost a pass over gigabytes.

use std::borrow::Cow;
use std::collections::HashMap;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;

/// One entry of the central directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    compressed_size: u64,
    pub size: u64,
    local_header_offset: u64,
}

#[derive(Debug)]
pub struct Archive<'a> {
    data: &'a [u8],
    pub entries: Vec<Entry>,
    /// Entry index by name; the first of repeated names wins.
    index: HashMap<String, usize>,
}

/// Bounds-checked little-endian reads at absolute offsets.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&self, at: u64, n: usize) -> Result<&'a [u8], String> {
        let at = usize::try_from(at).map_err(|_| "offset overflows")?;
        at.checked_add(n)
            .and_then(|end| self.0.get(at..end))
            .ok_or_else(|| format!("zip: truncated at byte {at}"))
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        let b = self.bytes(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        let mut a = [0; 8];
        a.copy_from_slice(self.bytes(at, 8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// Does this look like a zip archive (local header or empty-archive signature)?
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

impl<'a> Archive<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        let r = Reader(data);
        let eocd = find_eocd(data)?;
        let disk = r.u16(eocd + 4)?;
        let cd_disk = r.u16(eocd + 6)?;
        let mut count = u64::from(r.u16(eocd + 10)?);
        let mut cd_size = u64::from(r.u32(eocd + 12)?);
        let mut cd_offset = u64::from(r.u32(eocd + 16)?);
        if disk != 0 || cd_disk != 0 {
            return Err("zip: multi-disk archives are not supported".into());
        }
        // Saturated fields mean the real values are in the zip64 end record, found through
        // the locator just before this record.
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            let loc = eocd.checked_sub(20).ok_or("zip: zip64 locator missing")?;
            if r.u32(loc)? != EOCD64_LOCATOR_SIG {
                return Err("zip: zip64 locator missing".into());
            }
            let e64 = r.u64(loc + 8)?;
            if r.u32(e64)? != EOCD64_SIG {
                return Err("zip: bad zip64 end of central directory".into());
            }
            count = r.u64(e64 + 32)?;
            cd_size = r.u64(e64 + 40)?;
            cd_offset = r.u64(e64 + 48)?;
        }
        r.bytes(cd_offset, usize::try_from(cd_size).map_err(|_| "zip: central directory too large")?)?;
        // Every record takes at least 46 bytes, so the directory size bounds the count and a
        // corrupt count cannot make us reserve memory.
        if count > cd_size / 46 {
            return Err(format!("zip: {count} entries cannot fit in a {cd_size}-byte central directory"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = cd_offset;
        for _ in 0..count {
            let (entry, next) = central_entry(&r, at)?;
            entries.push(entry);
            at = next;
        }
        let mut index = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            index.entry(e.name.clone()).or_insert(i);
        }
        Ok(Archive { data, entries, index })
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.get(*self.index.get(name)?)
    }

    /// The uncompressed bytes of an entry: borrowed if stored, inflated if deflated.
    pub fn read(&self, e: &Entry) -> Result<Cow<'a, [u8]>, String> {
        let r = Reader(self.data);
        let lh = e.local_header_offset;
        if r.u32(lh)? != LOCAL_SIG {
            return Err(format!("zip: bad local header for '{}'", e.name));
        }
        // The local name and extra lengths may differ from the central ones (torch pads the
        // local extra field to align data), so the data start comes from the local header.
        let skip = 30 + u64::from(r.u16(lh + 26)?) + u64::from(r.u16(lh + 28)?);
        let start = lh.checked_add(skip).ok_or("zip: offset overflows")?;
        let len = usize::try_from(e.compressed_size).map_err(|_| "zip: entry too large")?;
        let raw = r.bytes(start, len).map_err(|_| format!("zip: data of '{}' runs past the end", e.name))?;
        if e.flags & 1 != 0 {
            return Err(format!("zip: '{}' is encrypted", e.name));
        }
        match e.method {
            STORED if e.size == e.compressed_size => Ok(Cow::Borrowed(raw)),
            STORED => Err(format!("zip: stored entry '{}' has mismatched sizes", e.name)),
            DEFLATED => {
                let size = usize::try_from(e.size).map_err(|_| "zip: entry too large")?;
                let out = miniz_oxide::inflate::decompress_to_vec_with_limit(raw, size)
                    .map_err(|err| format!("zip: cannot inflate '{}': {err}", e.name))?;
                if out.len() != size {
                    return Err(format!("zip: '{}' inflates to {} bytes, not {size}", e.name, out.len()));
                }
                Ok(Cow::Owned(out))
            }
            m => Err(format!(
                "zip: '{}' uses compression method {m}; only stored and deflate are supported",
                e.name
            )),
        }
    }
}

/// The end-of-central-directory record is the last 22 bytes plus a comment of up to 64 KiB;
/// scan backwards for its signature, accepting one whose comment length reaches the end.
fn find_eocd(data: &[u8]) -> Result<u64, String> {
    let r = Reader(data);
    let last = data.len().checked_sub(22).ok_or("zip: too short for an end of central directory")?;
    let first = last.saturating_sub(0xffff);
    for at in (first..=last).rev() {
        let at = at as u64;
        if r.u32(at)? == EOCD_SIG && at + 22 + u64::from(r.u16(at + 20)?) == data.len() as u64 {
            return Ok(at);
        }
    }
    Err("zip: no end of central directory record".into())
}

/// Parse the central directory record at `at`; returns it and the offset of the next one.
fn central_entry(r: &Reader, at: u64) -> Result<(Entry, u64), String> {
    if r.u32(at)? != CENTRAL_SIG {
        return Err(format!("zip: bad central directory record at byte {at}"));
    }
    let flags = r.u16(at + 8)?;
    let method = r.u16(at + 10)?;
    let mut compressed_size = u64::from(r.u32(at + 20)?);
    let mut size = u64::from(r.u32(at + 24)?);
    let name_len = usize::from(r.u16(at + 28)?);
    let extra_len = usize::from(r.u16(at + 30)?);
    let comment_len = u64::from(r.u16(at + 32)?);
    let mut local_header_offset = u64::from(r.u32(at + 42)?);
    let name = String::from_utf8_lossy(r.bytes(at + 46, name_len)?).into_owned();
    let extra_at = at + 46 + name_len as u64;
    let extra = r.bytes(extra_at, extra_len)?;

    // The zip64 extra field holds, in this order, exactly those of size, compressed size and
    // local header offset whose 32-bit field is saturated.
    let mut pos = 0;
    while pos + 4 <= extra.len() {
        let id = u16::from_le_bytes([extra[pos], extra[pos + 1]]);
        let len = usize::from(u16::from_le_bytes([extra[pos + 2], extra[pos + 3]]));
        let body = extra.get(pos + 4..pos + 4 + len).ok_or("zip: truncated extra field")?;
        if id == ZIP64_EXTRA {
            let mut vals = body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
            for field in [&mut size, &mut compressed_size, &mut local_header_offset] {
                if *field == 0xffff_ffff {
                    *field = vals.next().ok_or("zip: short zip64 extra field")?;
                }
            }
        }
        pos += 4 + len;
    }
    let next = extra_at + extra_len as u64 + comment_len;
    Ok((Entry { name, method, flags, compressed_size, size, local_header_offset }, next))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny zip writer for tests: stored (or fake-method) entries, optionally with every
    /// size and offset moved into zip64 fields.
    pub(crate) fn write_zip(entries: &[(&str, &[u8])], zip64: bool, method: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u64;
            out.extend(LOCAL_SIG.to_le_bytes());
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 8]); // time, date, crc
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(3u16.to_le_bytes()); // padding extra field, as torch aligns data
            out.extend(name.as_bytes());
            out.extend([0xaa; 3]);
            out.extend(*data);

            central.extend(CENTRAL_SIG.to_le_bytes());
            central.extend([20, 0, 45, 0, 0, 0]);
            central.extend(method.to_le_bytes());
            central.extend([0; 8]);
            let sat = |v: u64| if zip64 { 0xffff_ffff } else { v as u32 };
            central.extend(sat(data.len() as u64).to_le_bytes());
            central.extend(sat(data.len() as u64).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend((if zip64 { 28u16 } else { 0 }).to_le_bytes());
            central.extend([0; 10]); // comment len, disk, attributes
            central.extend(sat(offset).to_le_bytes());
            central.extend(name.as_bytes());
            if zip64 {
                central.extend(ZIP64_EXTRA.to_le_bytes());
                central.extend(24u16.to_le_bytes());
                central.extend((data.len() as u64).to_le_bytes());
                central.extend((data.len() as u64).to_le_bytes());
                central.extend(offset.to_le_bytes());
            }
        }
        let cd_offset = out.len() as u64;
        out.extend(&central);
        let n = entries.len() as u64;
        if zip64 {
            let e64 = out.len() as u64;
            out.extend(EOCD64_SIG.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(n.to_le_bytes());
            out.extend(n.to_le_bytes());
            out.extend((central.len() as u64).to_le_bytes());
            out.extend(cd_offset.to_le_bytes());
            out.extend(EOCD64_LOCATOR_SIG.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(e64.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(EOCD_SIG.to_le_bytes());
        out.extend([0; 4]);
        let count = if zip64 { 0xffff } else { n as u16 };
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend((if zip64 { 0xffff_ffff } else { central.len() as u32 }).to_le_bytes());
        out.extend((if zip64 { 0xffff_ffff } else { cd_offset as u32 }).to_le_bytes());
        out.extend([0, 0]);
        out
    }

    #[test]
    fn reads_stored_and_zip64_entries() {
        for zip64 in [false, true] {
            let z = write_zip(&[("a/data.pkl", b"hello"), ("a/data/0", b"")], zip64, STORED);
            let ar = Archive::parse(&z).unwrap();
            assert_eq!(ar.entries.len(), 2);
            assert_eq!(&*ar.read(ar.find("a/data.pkl").unwrap()).unwrap(), b"hello");
            assert_eq!(&*ar.read(ar.find("a/data/0").unwrap()).unwrap(), b"");
        }
    }

    #[test]
    fn unknown_method_is_a_clear_error() {
        let z = write_zip(&[("a/data.pkl", b"hello")], false, 14);
        let ar = Archive::parse(&z).unwrap();
        let err = ar.read(&ar.entries[0]).unwrap_err();
        assert!(err.contains("compression method 14"), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for zip64 in [false, true] {
            let z = write_zip(&[("a/data.pkl", b"hello")], zip64, STORED);
            for n in 0..z.len() {
                let ok = Archive::parse(&z[..n])
                    .and_then(|ar| ar.read(ar.entries.first().ok_or("empty")?).map(|_| ()));
                assert!(ok.is_err(), "prefix of {n} bytes parsed");
            }
        }
    }
}
