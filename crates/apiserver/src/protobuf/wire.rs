//! The protobuf wire format, read defensively: every length is checked against what is left,
//! varints longer than 64 bits and groups are refused, nothing panics on hostile bytes.

use super::Error;

/// One field's value as the wire carries it; what it means is the table's business.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Len(_) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// The fields of one message, in wire order: `(tag, value)`.
#[derive(Debug, Clone)]
pub(super) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn next_field(&mut self) -> Result<(u32, WireValue<'a>), Error> {
        let key = varint(&mut self.rest)?;
        let wire = (key & 7) as u8;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(Error::IllegalTag { tag, wire });
        }
        let value = match wire {
            0 => WireValue::Varint(varint(&mut self.rest)?),
            1 => WireValue::Fixed64(u64::from_le_bytes(take_array(&mut self.rest)?)),
            2 => {
                let len = varint(&mut self.rest)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= self.rest.len())
                    .ok_or(Error::Length(len))?;
                let (value, rest) = self.rest.split_at(len);
                self.rest = rest;
                WireValue::Len(value)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(take_array(&mut self.rest)?)),
            // 3 and 4 are proto2 groups, which no Kubernetes message uses; 6 and 7 do not exist.
            _ => return Err(Error::IllegalTag { tag, wire }),
        };
        // The tag fits in u32: checked above.
        Ok((tag as u32, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, WireValue<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            // One error ends the message: what follows cannot be framed.
            self.rest = &[];
        }
        Some(item)
    }
}

/// A base-128 varint; at most 10 bytes, the tenth holding only the 64th bit.
pub(super) fn varint(buf: &mut &[u8]) -> Result<u64, Error> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return Err(Error::VarintOverflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    if buf.len() >= 10 { Err(Error::VarintOverflow) } else { Err(Error::Truncated) }
}

fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(Error::Truncated)?;
    *buf = rest;
    Ok(*head)
}
