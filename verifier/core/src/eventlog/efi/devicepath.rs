//! UEFI device paths (UEFI 2.10 §10.2 `EFI_DEVICE_PATH_PROTOCOL`, §10.3 node
//! types) and their text form (§10.6, as EDK2's `ConvertDevicePathToText`
//! prints it with `DisplayOnly = FALSE`).
//!
//! A device path is a list of nodes `{ UINT8 Type; UINT8 SubType; UINT16 Length;
//! data[Length - 4] }` ending with an End node (type 0x7f). Unknown nodes are
//! never an error: they print in the spec's generic forms (`HardwarePath(sub,hex)`,
//! `AcpiPath`, `Msg`, `MediaPath`, `BbsPath`, or `Path(type,sub,hex)`). Only a
//! structurally broken length (below 4, or past the end) is, and
//! [`DevicePath::from_bytes`] turns even that into "bytes kept, no text".

use std::fmt::Write as _;

use serde::Serialize;

use super::wire::{ser_hex, utf16_lossy, Cursor, Guid};
use super::EfiError;

/// Most nodes accepted in one device path buffer.
pub const MAX_NODES: usize = 1024;

const HARDWARE: u8 = 0x01;
const ACPI: u8 = 0x02;
const MESSAGING: u8 = 0x03;
const MEDIA: u8 = 0x04;
const BBS: u8 = 0x05;
const END: u8 = 0x7f;
const END_INSTANCE: u8 = 0x01;
const END_ENTIRE: u8 = 0xff;
const MEDIA_FILE_PATH: u8 = 0x04;

/// A device path as logged: the bytes, and their text when they are sound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePath {
    #[serde(serialize_with = "ser_hex")]
    pub bytes: Vec<u8>,
    /// `PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/HD(...)/\EFI\BOOT\BOOTX64.EFI`;
    /// `None` when a node length is broken. Several device paths in one buffer
    /// (as in a load option's `FilePathList`) are separated by `;`.
    pub text: Option<String>,
    /// Why there is no text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DevicePath {
    /// Keeps `bytes` and renders them if they are sound; never fails.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let (text, error) = match to_text(bytes) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(e.to_string())),
        };
        DevicePath {
            bytes: bytes.to_vec(),
            text,
            error,
        }
    }

    /// The text of the last media File Path node (`\EFI\BOOT\BOOTX64.EFI`), if any.
    pub fn file_path(&self) -> Option<String> {
        parse_nodes(&self.bytes)
            .ok()?
            .iter()
            .rev()
            .find(|n| n.node_type == MEDIA && n.sub_type == MEDIA_FILE_PATH)
            .map(|n| file_path_text(n.data))
    }
}

/// One node; `data` excludes the 4-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePathNode<'a> {
    pub node_type: u8,
    pub sub_type: u8,
    pub data: &'a [u8],
}

/// Splits a buffer into nodes (End nodes included). Fails only on a node
/// length below 4 or past the end of the buffer, or too many nodes.
pub fn parse_nodes(bytes: &[u8]) -> Result<Vec<DevicePathNode<'_>>, EfiError> {
    let mut cur = Cursor::new(bytes, "EFI_DEVICE_PATH_PROTOCOL");
    let mut nodes = Vec::new();
    while cur.left() > 0 {
        if nodes.len() >= MAX_NODES {
            return Err(cur.too_large(
                "nodes",
                (MAX_NODES as u64).saturating_add(1),
                MAX_NODES as u64,
            ));
        }
        let node_type = cur.u8("Type")?;
        let sub_type = cur.u8("SubType")?;
        let length = cur.u16("Length")?;
        let data_len = length.checked_sub(4).ok_or_else(|| {
            cur.invalid(
                "Length",
                format!("{length} is smaller than the 4-byte node header"),
            )
        })?;
        let data = cur.take(usize::from(data_len), "Length")?;
        nodes.push(DevicePathNode {
            node_type,
            sub_type,
            data,
        });
    }
    Ok(nodes)
}

/// The text form of every device path in `bytes`.
pub fn to_text(bytes: &[u8]) -> Result<String, EfiError> {
    let nodes = parse_nodes(bytes)?;
    let mut out = String::new();
    // What goes before the next node: nothing, "/", "," (new instance) or ";"
    // (a further device path after an End Entire node).
    let mut sep = "";
    for node in &nodes {
        match (node.node_type, node.sub_type) {
            (END, END_INSTANCE) => sep = ",",
            (END, END_ENTIRE) => sep = ";",
            _ => {
                out.push_str(sep);
                out.push_str(&node_text(node));
                sep = "/";
            }
        }
    }
    Ok(out)
}

/// The text of one node: its specific form when known and long enough,
/// otherwise the generic form.
pub fn node_text(node: &DevicePathNode<'_>) -> String {
    let mut c = Cursor::new(node.data, "device path node");
    let specific = match (node.node_type, node.sub_type) {
        (HARDWARE, _) => hardware(node.sub_type, &mut c),
        (ACPI, _) => acpi(node.sub_type, &mut c),
        (MESSAGING, _) => messaging(node.sub_type, &mut c),
        (MEDIA, _) => media(node.sub_type, &mut c),
        (BBS, 0x01) => bbs(&mut c),
        _ => Ok(None),
    };
    match specific {
        Ok(Some(text)) => text,
        Ok(None) | Err(_) => generic(node),
    }
}

fn generic(node: &DevicePathNode<'_>) -> String {
    let mut out = match node.node_type {
        HARDWARE => format!("HardwarePath({}", node.sub_type),
        ACPI => format!("AcpiPath({}", node.sub_type),
        MESSAGING => format!("Msg({}", node.sub_type),
        MEDIA => format!("MediaPath({}", node.sub_type),
        BBS => format!("BbsPath({}", node.sub_type),
        t => format!("Path({t},{}", node.sub_type),
    };
    if !node.data.is_empty() {
        out.push(',');
        out.push_str(&hex::encode(node.data));
    }
    out.push(')');
    out
}

type NodeText = Result<Option<String>, EfiError>;

fn vendor(prefix: &str, c: &mut Cursor<'_>) -> NodeText {
    let guid = c.guid("VendorGuid")?;
    let data = c.rest();
    Ok(Some(if data.is_empty() {
        format!("{prefix}({guid})")
    } else {
        format!("{prefix}({guid},{})", hex::encode(data))
    }))
}

fn hardware(sub: u8, c: &mut Cursor<'_>) -> NodeText {
    Ok(Some(match sub {
        0x01 => {
            let function = c.u8("Function")?;
            let device = c.u8("Device")?;
            format!("Pci(0x{device:x},0x{function:x})")
        }
        0x02 => format!("PcCard(0x{:x})", c.u8("FunctionNumber")?),
        0x03 => {
            let memory_type = c.u32("MemoryType")?;
            let start = c.u64("StartingAddress")?;
            let end = c.u64("EndingAddress")?;
            format!("MemoryMapped(0x{memory_type:x},0x{start:x},0x{end:x})")
        }
        0x04 => return vendor("VenHw", c),
        0x05 => format!("Ctrl(0x{:x})", c.u32("ControllerNumber")?),
        0x06 => {
            let interface = c.u8("InterfaceType")?;
            let base = c.u64("BaseAddress")?;
            format!("BMC(0x{interface:x},0x{base:x})")
        }
        _ => return Ok(None),
    }))
}

fn acpi(sub: u8, c: &mut Cursor<'_>) -> NodeText {
    Ok(Some(match sub {
        0x01 => {
            let hid = c.u32("HID")?;
            let uid = c.u32("UID")?;
            // EISA PNP ids: "PNP" compressed in the low 16 bits, number in the high 16.
            if hid & 0xffff == 0x41d0 {
                let pnp = hid >> 16;
                match pnp {
                    0x0a03 => format!("PciRoot(0x{uid:x})"),
                    0x0a08 => format!("PcieRoot(0x{uid:x})"),
                    0x0604 => format!("Floppy(0x{uid:x})"),
                    0x0301 => format!("Keyboard(0x{uid:x})"),
                    0x0501 => format!("Serial(0x{uid:x})"),
                    0x0401 => format!("ParallelPort(0x{uid:x})"),
                    _ => format!("Acpi(PNP{pnp:04x},0x{uid:x})"),
                }
            } else {
                format!("Acpi(0x{hid:08x},0x{uid:x})")
            }
        }
        0x03 => {
            let mut out = format!("AcpiAdr(0x{:x}", c.u32("ADR")?);
            while c.left() >= 4 {
                let _ = write!(out, ",0x{:x}", c.u32("ADR")?);
            }
            out.push(')');
            out
        }
        _ => return Ok(None),
    }))
}

fn ipv4(c: &mut Cursor<'_>, field: &'static str) -> Result<String, EfiError> {
    let [a, b, d, e] = <[u8; 4]>::try_from(c.take(4, field)?).unwrap_or_default();
    Ok(format!("{a}.{b}.{d}.{e}"))
}

fn ipv6(c: &mut Cursor<'_>, field: &'static str) -> Result<String, EfiError> {
    let bytes = c.take(16, field)?;
    Ok(bytes
        .chunks_exact(2)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join(":"))
}

fn protocol(p: u16) -> String {
    match p {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        _ => format!("0x{p:x}"),
    }
}

/// `IPv4(remote,protocol,Static|DHCP,local[,gateway,mask])`.
fn ipv4_node(c: &mut Cursor<'_>) -> Result<String, EfiError> {
    let local = ipv4(c, "LocalIpAddress")?;
    let remote = ipv4(c, "RemoteIpAddress")?;
    let _local_port = c.u16("LocalPort")?;
    let _remote_port = c.u16("RemotePort")?;
    let proto = protocol(c.u16("Protocol")?);
    let origin = if c.u8("StaticIpAddress")? != 0 {
        "Static"
    } else {
        "DHCP"
    };
    let mut out = format!("IPv4({remote},{proto},{origin},{local}");
    if c.left() >= 8 {
        let gateway = ipv4(c, "GatewayIpAddress")?;
        let mask = ipv4(c, "SubnetMask")?;
        let _ = write!(out, ",{gateway},{mask}");
    }
    out.push(')');
    Ok(out)
}

/// `IPv6(remote,protocol,origin,local[,gateway])`.
fn ipv6_node(c: &mut Cursor<'_>) -> Result<String, EfiError> {
    let local = ipv6(c, "LocalIpAddress")?;
    let remote = ipv6(c, "RemoteIpAddress")?;
    let _local_port = c.u16("LocalPort")?;
    let _remote_port = c.u16("RemotePort")?;
    let proto = protocol(c.u16("Protocol")?);
    let origin = match c.u8("IpAddressOrigin")? {
        0 => "Static",
        1 => "StatelessAutoConfigure",
        _ => "StatefulAutoConfigure",
    };
    let mut out = format!("IPv6({remote},{proto},{origin},{local}");
    if c.left() >= 17 {
        let _prefix = c.u8("PrefixLength")?;
        let _ = write!(out, ",{}", ipv6(c, "GatewayIpAddress")?);
    }
    out.push(')');
    Ok(out)
}

fn messaging(sub: u8, c: &mut Cursor<'_>) -> NodeText {
    Ok(Some(match sub {
        0x01 => {
            let primary = if c.u8("PrimarySecondary")? == 0 {
                "Primary"
            } else {
                "Secondary"
            };
            let master = if c.u8("SlaveMaster")? == 0 {
                "Master"
            } else {
                "Slave"
            };
            format!("Ata({primary},{master},0x{:x})", c.u16("Lun")?)
        }
        0x02 => {
            let target = c.u16("TargetId")?;
            format!("Scsi(0x{target:x},0x{:x})", c.u16("Lun")?)
        }
        0x05 => {
            let port = c.u8("ParentPortNumber")?;
            format!("USB(0x{port:x},0x{:x})", c.u8("InterfaceNumber")?)
        }
        0x0a => return vendor("VenMsg", c),
        0x0b => {
            let address = c.take(32, "MacAddress")?;
            let if_type = c.u8("IfType")?;
            let len = if if_type <= 1 { 6 } else { 32 };
            let shown = address.get(..len).unwrap_or(address);
            format!("MAC({},0x{if_type:x})", hex::encode(shown))
        }
        0x0c => ipv4_node(c)?,
        0x0d => ipv6_node(c)?,
        0x0f => {
            let vendor_id = c.u16("VendorId")?;
            let product_id = c.u16("ProductId")?;
            let class = c.u8("DeviceClass")?;
            let subclass = c.u8("DeviceSubClass")?;
            let proto = c.u8("DeviceProtocol")?;
            format!(
                "UsbClass(0x{vendor_id:x},0x{product_id:x},0x{class:x},0x{subclass:x},0x{proto:x})"
            )
        }
        0x12 => {
            let hba = c.u16("HBAPortNumber")?;
            let pm = c.u16("PortMultiplierPortNumber")?;
            format!("Sata(0x{hba:x},0x{pm:x},0x{:x})", c.u16("Lun")?)
        }
        0x17 => {
            let nsid = c.u32("NamespaceId")?;
            let eui = c.take(8, "NamespaceUuid")?;
            let eui: Vec<String> = eui.iter().rev().map(|b| format!("{b:02X}")).collect();
            format!("NVMe(0x{nsid:x},{})", eui.join("-"))
        }
        0x18 => format!("Uri({})", String::from_utf8_lossy(c.rest())),
        _ => return Ok(None),
    }))
}

fn file_path_text(data: &[u8]) -> String {
    let text = utf16_lossy(data);
    match text.find('\0') {
        Some(end) => text.get(..end).unwrap_or_default().to_string(),
        None => text,
    }
}

fn media(sub: u8, c: &mut Cursor<'_>) -> NodeText {
    Ok(Some(match sub {
        0x01 => {
            let number = c.u32("PartitionNumber")?;
            let start = c.u64("PartitionStart")?;
            let size = c.u64("PartitionSize")?;
            let signature = c.take(16, "Signature")?;
            let _format = c.u8("MBRType")?;
            let signature_type = c.u8("SignatureType")?;
            let sig = match signature_type {
                0x01 => {
                    let mbr = <[u8; 4]>::try_from(signature.get(..4).unwrap_or_default())
                        .unwrap_or_default();
                    format!("MBR,0x{:08x}", u32::from_le_bytes(mbr))
                }
                0x02 => {
                    let guid = <[u8; 16]>::try_from(signature).unwrap_or_default();
                    format!("GPT,{}", Guid(guid))
                }
                other => format!("{other},0"),
            };
            format!("HD({number},{sig},0x{start:x},0x{size:x})")
        }
        0x02 => {
            let entry = c.u32("BootEntry")?;
            let start = c.u64("PartitionStart")?;
            let size = c.u64("PartitionSize")?;
            format!("CDROM(0x{entry:x},0x{start:x},0x{size:x})")
        }
        0x03 => return vendor("VenMedia", c),
        MEDIA_FILE_PATH => {
            if !c.left().is_multiple_of(2) {
                return Ok(None);
            }
            file_path_text(c.rest())
        }
        0x05 => format!("Media({})", c.guid("Protocol")?),
        0x06 => format!("FvFile({})", c.guid("FvFileName")?),
        0x07 => format!("Fv({})", c.guid("FvName")?),
        0x08 => {
            let _reserved = c.u32("Reserved")?;
            let start = c.u64("StartingOffset")?;
            let end = c.u64("EndingOffset")?;
            format!("Offset(0x{start:x},0x{end:x})")
        }
        _ => return Ok(None),
    }))
}

fn bbs(c: &mut Cursor<'_>) -> NodeText {
    let device_type = c.u16("DeviceType")?;
    let status = c.u16("StatusFlag")?;
    let description = c.rest();
    let description = description.split(|&b| b == 0).next().unwrap_or_default();
    let kind = match device_type {
        0x01 => "Floppy".to_string(),
        0x02 => "HD".to_string(),
        0x03 => "CDROM".to_string(),
        0x04 => "PCMCIA".to_string(),
        0x05 => "USB".to_string(),
        0x06 => "Network".to_string(),
        other => format!("0x{other:x}"),
    };
    Ok(Some(format!(
        "BBS({kind},{},0x{status:x})",
        String::from_utf8_lossy(description)
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn text(hex_path: &str) -> String {
        to_text(&hex::decode(hex_path).unwrap()).unwrap()
    }

    #[test]
    fn boot_application_path_from_go_attestation_sb_cert_log() {
        // Event 10 of go-attestation's sb_cert_eventlog (tpm2_eventlog prints only the hex).
        let path = "02010c00d041030a0000000001010600000303020800010000000401\
                    2a000f000000002800000000000000500300000000008b2a8727fc87c249bf273afc4cf8\
                    45860202040430005c004500460049005c0042004f004f0054005c0042004f004f005400\
                    5800360034002e0045004600490000007fff0400";
        assert_eq!(
            text(path),
            "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/\
             HD(15,GPT,27872a8b-87fc-49c2-bf27-3afc4cf84586,0x2800,0x35000)/\\EFI\\BOOT\\BOOTX64.EFI"
        );
        let dp = DevicePath::from_bytes(&hex::decode(path).unwrap());
        assert_eq!(dp.file_path().as_deref(), Some("\\EFI\\BOOT\\BOOTX64.EFI"));
    }

    #[test]
    fn option_rom_and_firmware_volume_paths() {
        // keylime binary_bios_measurements-secureboot, events 14 and 18.
        assert_eq!(
            text(
                "02010c00d041030a00000000010106000002010106000000040818000000000000600100000000\
                  00ff530300000000007fff0400"
            ),
            "PciRoot(0x0)/Pci(0x2,0x0)/Pci(0x0,0x0)/Offset(0x16000,0x353ff)"
        );
        assert_eq!(
            text("04071400c9bdb87cebf8344faaea3ee4af6516a10406140021aa2c4614760345836e8ab6f46623317fff0400"),
            "Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)"
        );
    }

    #[test]
    fn common_nodes() {
        let node = |t: u8, s: u8, data: &[u8]| {
            let mut out = vec![t, s];
            out.extend(((data.len() + 4) as u16).to_le_bytes());
            out.extend(data);
            out
        };
        let render = |bytes: Vec<u8>| to_text(&bytes).unwrap();
        let mut mac = [0u8; 33];
        mac[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        mac[32] = 1;
        assert_eq!(render(node(3, 0x0b, &mac)), "MAC(525400123456,0x1)");
        assert_eq!(
            render(node(3, 0x18, b"http://boot/x.efi")),
            "Uri(http://boot/x.efi)"
        );
        assert_eq!(
            render(node(3, 0x12, &[1, 0, 0xff, 0xff, 0, 0])),
            "Sata(0x1,0xffff,0x0)"
        );
        assert_eq!(
            render(node(3, 0x17, &[1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])),
            "NVMe(0x1,08-07-06-05-04-03-02-01)"
        );
        assert_eq!(render(node(3, 0x05, &[2, 0])), "USB(0x2,0x0)");
        let mut ip = vec![10, 0, 0, 2, 10, 0, 0, 1, 0, 0, 0x45, 0, 17, 0, 0];
        assert_eq!(
            render(node(3, 0x0c, &ip)),
            "IPv4(10.0.0.1,UDP,DHCP,10.0.0.2)"
        );
        ip.extend([10, 0, 0, 254, 255, 255, 255, 0]);
        assert_eq!(
            render(node(3, 0x0c, &ip)),
            "IPv4(10.0.0.1,UDP,DHCP,10.0.0.2,10.0.0.254,255.255.255.0)"
        );
        let mut ip6 = vec![0u8; 56];
        ip6[15] = 2; // local ::2
        ip6[16] = 0xfe; // remote fe80::1
        ip6[17] = 0x80;
        ip6[31] = 1;
        ip6[36] = 6; // TCP
        assert_eq!(
            render(node(3, 0x0d, &ip6)),
            "IPv6(fe80:0000:0000:0000:0000:0000:0000:0001,TCP,Static,\
             0000:0000:0000:0000:0000:0000:0000:0002,0000:0000:0000:0000:0000:0000:0000:0000)"
        );
        let mut hd = vec![1, 0, 0, 0];
        hd.extend(0x800u64.to_le_bytes());
        hd.extend(0x1000u64.to_le_bytes());
        hd.extend([0x78, 0x56, 0x34, 0x12]);
        hd.extend([0; 12]);
        hd.extend([1, 1]);
        assert_eq!(render(node(4, 1, &hd)), "HD(1,MBR,0x12345678,0x800,0x1000)");
        assert_eq!(
            render(node(2, 1, &[0xd0, 0x41, 0x01, 0x05, 0, 0, 0, 0])),
            "Serial(0x0)"
        );
        assert_eq!(
            render(node(2, 1, &[0xd0, 0x41, 0x03, 0x0c, 1, 0, 0, 0])),
            "Acpi(PNP0c03,0x1)"
        );
        assert_eq!(
            render(node(2, 1, &[1, 2, 3, 4, 0, 0, 0, 0])),
            "Acpi(0x04030201,0x0)"
        );
        assert_eq!(
            render(node(2, 3, &[1, 0, 0, 0, 2, 0, 0, 0])),
            "AcpiAdr(0x1,0x2)"
        );
        let mut ven = OWNER_BYTES.to_vec();
        ven.push(0xab);
        assert_eq!(
            render(node(1, 4, &ven)),
            format!("VenHw({},ab)", Guid(OWNER_BYTES))
        );
        assert_eq!(render(node(1, 5, &[3, 0, 0, 0])), "Ctrl(0x3)");
        assert_eq!(
            render(node(5, 1, b"\x02\x00\x00\x01Disk\0")),
            "BBS(HD,Disk,0x100)"
        );
        // Two instances, then a second device path.
        let mut multi = node(1, 1, &[0, 3]);
        multi.extend(node(0x7f, 0x01, &[]));
        multi.extend(node(1, 1, &[1, 4]));
        multi.extend(node(0x7f, 0xff, &[]));
        multi.extend(node(4, 4, &[b'x', 0, 0, 0]));
        assert_eq!(render(multi), "Pci(0x3,0x0),Pci(0x4,0x1);x");
    }

    const OWNER_BYTES: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    #[test]
    fn unknown_and_short_nodes_render_generically() {
        assert_eq!(text("0109050001"), "HardwarePath(9,01)");
        assert_eq!(text("03ff0400"), "Msg(255)");
        assert_eq!(text("0401050001"), "MediaPath(1,01)", "HD node too short");
        assert_eq!(
            text("0404050041"),
            "MediaPath(4,41)",
            "odd-length file path"
        );
        assert_eq!(text("09010600abcd"), "Path(9,1,abcd)");
        assert_eq!(text("02020400"), "AcpiPath(2)");
        assert_eq!(text("0502060000ff"), "BbsPath(2,00ff)");
        assert_eq!(text(""), "");
    }

    #[test]
    fn broken_lengths_keep_the_bytes_without_text() {
        for bad in [
            "01",
            "0101",
            "010103",
            "01010300",
            "0101060000",
            "01010800aabbcc",
        ] {
            let bytes = hex::decode(bad).unwrap();
            assert!(to_text(&bytes).is_err(), "{bad}");
            let dp = DevicePath::from_bytes(&bytes);
            assert_eq!(dp.bytes, bytes);
            assert_eq!(dp.text, None);
            assert!(dp.error.is_some());
            assert_eq!(dp.file_path(), None);
        }
        let err = to_text(&hex::decode("01010300").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Length: 3 is smaller than the 4-byte node header"),
            "{err}"
        );
        let many: Vec<u8> = std::iter::repeat_n([0x7f, 0x01, 4, 0], MAX_NODES + 1)
            .flatten()
            .collect();
        assert!(matches!(parse_nodes(&many), Err(EfiError::TooLarge { .. })));
    }
}
