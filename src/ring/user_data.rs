//! `user_data` encoding shared by every ring: which slot, which incarnation of that slot, and
//! which operation a completion belongs to. Part of `ring/`; knows nothing of protocols.
//!
//! Layout (64 bits): `slot:32 | generation:16 | op:8 | aux:8`. The generation catches a
//! completion that arrives for a slot already reused: with correct bookkeeping (a slot is freed
//! only when nothing is in flight for it) that never happens, so callers assert on it.

/// Operation kinds; the numbering is only meaningful inside one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Close = 4,
    Shutdown = 5,
    Socket = 6,
    Connect = 7,
    Bind = 8,
    PollRing = 9,
    Timeout = 10,
    Cancel = 11,
    SetSockOpt = 12,
    /// A poll of a cross-shard inbox's eventfd (`serve --legacy-sse`).
    Inbox = 13,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Close,
            5 => Op::Shutdown,
            6 => Op::Socket,
            7 => Op::Connect,
            8 => Op::Bind,
            9 => Op::PollRing,
            10 => Op::Timeout,
            11 => Op::Cancel,
            12 => Op::SetSockOpt,
            13 => Op::Inbox,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserData {
    pub slot: u32,
    pub generation: u16,
    pub op: Op,
    pub aux: u8,
}

impl UserData {
    pub const fn new(slot: u32, generation: u16, op: Op) -> UserData {
        UserData {
            slot,
            generation,
            op,
            aux: 0,
        }
    }

    pub const fn with_aux(mut self, aux: u8) -> UserData {
        self.aux = aux;
        self
    }

    pub const fn encode(self) -> u64 {
        ((self.slot as u64) << 32)
            | ((self.generation as u64) << 16)
            | ((self.op as u64) << 8)
            | self.aux as u64
    }

    /// Decodes a completion's `user_data`. `None` only for values this process never encoded
    /// (a programmer error the caller asserts on).
    pub fn decode(raw: u64) -> Option<UserData> {
        let op = Op::from_u8((raw >> 8) as u8)?;
        Some(UserData {
            slot: (raw >> 32) as u32,
            generation: (raw >> 16) as u16,
            op,
            aux: raw as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_at_its_extremes() {
        for (slot, generation, op, aux) in [
            (0, 0, Op::Accept, 0),
            (u32::MAX, u16::MAX, Op::SetSockOpt, u8::MAX),
            (123_456, 7, Op::Recv, 3),
        ] {
            let ud = UserData::new(slot, generation, op).with_aux(aux);
            assert_eq!(UserData::decode(ud.encode()), Some(ud));
        }
        assert_eq!(UserData::decode(0), None);
    }
}
