//! Per-log expectations, checked by hand against `tpm2_eventlog` and `openssl x509`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

#[test]
fn tpm2_tools_uefivar_secure_boot() {
    // tpm2_eventlog: EventNum 1, EV_EFI_VARIABLE_DRIVER_CONFIG, VariableName
    // 8be4df61-93ca-11d2-aa0d-00e098032b8c, UnicodeName SecureBoot, VariableData "01".
    let events = log("tpm2-tools/event-uefivar.bin");
    assert_eq!(events.len(), 2);
    assert_eq!(
        event_type_name(events[1].event_type),
        "EV_EFI_VARIABLE_DRIVER_CONFIG"
    );
    let v = variable(&events[1]);
    assert_eq!(
        v.vendor_guid.to_string(),
        "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    );
    assert_eq!(v.name, "SecureBoot");
    assert_eq!(v.data, vec![1]);
    assert_eq!(v.value, VariableValue::SecureBoot { enabled: true });
}

fn subjects(v: &VariableData) -> Vec<String> {
    certs(v).into_iter().map(|c| c.subject.unwrap()).collect()
}

fn cn(subject: &str) -> &str {
    subject
        .rsplit("CN=")
        .next()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
}

#[test]
fn go_attestation_sb_cert_log() {
    let ev = log("go-attestation/sb_cert_eventlog");
    assert_eq!(ev.len(), 15);
    // tpm2_eventlog: EV_S_CRTM_VERSION Event "0000" (an empty CHAR16 string).
    assert_eq!(
        decoded(&ev[1]),
        EventData::CrtmVersion(CrtmVersion::Text {
            text: String::new()
        })
    );
    assert_eq!(
        variable(&ev[2]).value,
        VariableValue::SecureBoot { enabled: true }
    );
    // PK: one self-signed "newpk" (openssl x509: subject CN = newpk).
    let pk = variable(&ev[3]);
    assert_eq!((pk.name.as_str(), pk.data.len()), ("PK", 806));
    assert_eq!(subjects(&pk), ["CN=newpk"]);
    assert_eq!(certs(&pk)[0].serial.as_deref(), Some("d54a14e867835dea"));
    let kek = variable(&ev[4]);
    assert_eq!(
        subjects(&kek).iter().map(|s| cn(s)).collect::<Vec<_>>(),
        ["Microsoft Corporation KEK CA 2011"]
    );
    let db = variable(&ev[5]);
    assert_eq!(db.vendor_guid, variable::EFI_IMAGE_SECURITY_DATABASE_GUID);
    assert_eq!(
        subjects(&db).iter().map(|s| cn(s)).collect::<Vec<_>>(),
        [
            "Microsoft Corporation UEFI CA 2011",
            "Microsoft Root Certificate Authority 2010",
            "Microsoft Windows Production PCA 2011",
            "Microsoft Corporation Third Party Marketplace Root",
        ]
    );
    assert!(subjects(&db)
        .iter()
        .all(|s| s.contains("O=Microsoft Corporation")));
    // dbx: one EFI_CERT_SHA256 list of (3724 - 28) / 48 entries.
    let dbx = variable(&ev[6]);
    assert_eq!((dbx.data.len(), sha256_entries(&dbx)), (3724, 77));
    assert_eq!(decoded(&ev[7]), EventData::Separator(Separator::Normal));
    // The authority that allowed the boot loader: Microsoft's UEFI CA 2011.
    let VariableValue::Authority(Authority::Signature { entry }) = variable(&ev[8]).value else {
        panic!()
    };
    let SignatureValue::X509(ca) = entry.value else {
        panic!()
    };
    assert_eq!(
        cn(ca.subject.as_deref().unwrap()),
        "Microsoft Corporation UEFI CA 2011"
    );
    assert_eq!(
        hex::encode(ca.sha256),
        "48e99b991f57fc52f76149599bff0a58c47154229b9f8d603ac40d3500248507"
    );
    // The GPT, whose ESP is the disk the first boot application came from.
    let EventData::Gpt(gpt) = decoded(&ev[9]) else {
        panic!()
    };
    assert_eq!(gpt.partitions.len(), 3);
    let esp = &gpt.partitions[2];
    assert_eq!(
        esp.partition_type_guid.to_string(),
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    );
    assert_eq!(
        (esp.starting_lba, esp.ending_lba),
        (0x2800, 0x2800 + 0x35000 - 1)
    );
    // tpm2_eventlog: ImageLocationInMemory 0xbe5a1018, ImageLengthInMemory 1334816,
    // LengthOfDevicePath 120, DevicePath '02010c00d041030a...7fff0400'.
    let app = image(&ev[10]);
    assert_eq!(
        (app.image_location_in_memory, app.image_length_in_memory),
        (0xbe5a_1018, 1_334_816)
    );
    assert_eq!(app.device_path.bytes.len(), 120);
    assert_eq!(
        app.device_path.text.as_deref(),
        Some(
            "PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/\
             HD(15,GPT,27872a8b-87fc-49c2-bf27-3afc4cf84586,0x2800,0x35000)/\\EFI\\BOOT\\BOOTX64.EFI"
        )
    );
    assert!(app
        .device_path
        .text
        .as_deref()
        .unwrap()
        .contains(&esp.unique_partition_guid.to_string()));
    assert_eq!(
        app.device_path.file_path().as_deref(),
        Some("\\EFI\\BOOT\\BOOTX64.EFI")
    );
    // tpm2_eventlog: LengthOfDevicePath 0, then DevicePath '0074110000781100af'.
    let odd = image(&ev[11]);
    assert_eq!(
        (odd.device_path.bytes.len(), hex::encode(&odd.trailing)),
        (0, "0074110000781100af".into())
    );
    // The old-shim authority: a bare certificate, 6 bytes after VariableData.
    let shim = variable(&ev[12]);
    assert_eq!(
        (shim.name.as_str(), shim.vendor_guid),
        ("Shim", variable::SHIM_LOCK_GUID)
    );
    let VariableValue::Authority(Authority::Certificate { certificate }) = &shim.value else {
        panic!()
    };
    assert_eq!(
        cn(certificate.subject.as_deref().unwrap()),
        "Canonical Ltd. Master Certificate Authority"
    );
    assert_eq!(hex::encode(&shim.trailing), "0000000000af");
}

#[test]
fn keylime_secureboot_log() {
    let ev = log("keylime/binary_bios_measurements-secureboot");
    assert_eq!(ev.len(), 99);
    // tpm2_eventlog: EV_S_CRTM_VERSION "650064006b00..." = "edk2-20240524-7.el9".
    assert_eq!(
        decoded(&ev[1]).clone(),
        EventData::CrtmVersion(CrtmVersion::Text {
            text: "edk2-20240524-7.el9".into()
        })
    );
    // tpm2_eventlog: BlobBase 0x820000 / BlobLength 0xe0000, 0x900000 / 0xe80000.
    for (i, base, length) in [(2, 0x82_0000, 0xe_0000), (3, 0x90_0000, 0xe8_0000)] {
        assert_eq!(
            decoded(&ev[i]),
            EventData::FirmwareBlob(FirmwareBlob {
                description: None,
                base,
                length
            })
        );
    }
    assert_eq!(
        variable(&ev[4]).value,
        VariableValue::SecureBoot { enabled: true }
    );
    // PK, checked with openssl x509 -subject -serial -fingerprint -sha256.
    let pk = certs(&variable(&ev[5]));
    assert_eq!(pk.len(), 1);
    assert_eq!(
        pk[0].subject.as_deref(),
        Some("CN=Red Hat Secure Boot (PK/KEK key 1), Email=secalert@redhat.com")
    );
    assert_eq!(pk[0].serial.as_deref(), Some("fef588e8f396c0f1"));
    assert_eq!(
        hex::encode(pk[0].sha256),
        "7f122fab825041c2b0c67696bb151db6f39fed7df2d1104107f5b892b354ef5c"
    );
    let kek = subjects(&variable(&ev[6]));
    assert_eq!(kek.len(), 3);
    assert!(kek
        .iter()
        .any(|s| cn(s) == "Microsoft Corporation KEK 2K CA 2023"));
    let db = subjects(&variable(&ev[7]));
    assert_eq!(
        db.iter().map(|s| cn(s)).collect::<Vec<_>>(),
        [
            "Microsoft Windows Production PCA 2011",
            "Windows UEFI CA 2023",
            "Microsoft Corporation UEFI CA 2011",
            "Microsoft UEFI CA 2023",
        ]
    );
    // dbx: VariableDataLength 17836, one SHA-256 list: (17836 - 28) / 48.
    assert_eq!(sha256_entries(&variable(&ev[8])), 371);
    // The option ROM (tpm2_eventlog prints only the hex).
    assert_eq!(
        image(&ev[14]).device_path.text.as_deref(),
        Some("PciRoot(0x0)/Pci(0x2,0x0)/Pci(0x0,0x0)/Offset(0x16000,0x353ff)")
    );
    // tpm2_eventlog: BootOrder VariableData "010002000000".
    assert_eq!(
        variable(&ev[15]).value,
        VariableValue::BootOrder {
            order: vec![1, 2, 0]
        }
    );
    let VariableValue::LoadOption(boot1) = variable(&ev[16]).value else {
        panic!()
    };
    assert_eq!(
        (boot1.description.as_str(), boot1.active),
        ("Red Hat Enterprise Linux", true)
    );
    assert_eq!(
        boot1.device_path.text.as_deref(),
        Some("HD(1,GPT,a88ed452-9a52-45c4-91ce-3da7707caaab,0x800,0x12c000)/\\EFI\\redhat\\shimx64.efi")
    );
    let VariableValue::LoadOption(boot2) = variable(&ev[17]).value else {
        panic!()
    };
    assert_eq!(boot2.description, "UEFI Misc Device");
    assert_eq!(
        hex::encode(&boot2.optional_data),
        "4eac0881119f594d850ee21a522c59b2"
    );
    let EventData::Action(action) = decoded(&ev[19]) else {
        panic!()
    };
    assert_eq!(action.text, "Calling EFI Application from Boot Option");
    for (pcr, sep) in ev[20..=26].iter().enumerate() {
        assert_eq!(sep.pcr as usize, pcr);
        assert_eq!(
            decoded(sep),
            EventData::Separator(Separator::Normal),
            "PCR {pcr}"
        );
    }
    let EventData::Gpt(gpt) = decoded(&ev[28]) else {
        panic!()
    };
    assert_eq!(gpt.partitions[0].name, "EFI System Partition");
    assert_eq!(
        gpt.partitions[0].unique_partition_guid.to_string(),
        "a88ed452-9a52-45c4-91ce-3da7707caaab"
    );
    let shim = image(&ev[29]);
    assert!(shim
        .device_path
        .text
        .as_deref()
        .unwrap()
        .starts_with("PciRoot(0x0)/Pci(0x2,0x3)/Pci(0x0,0x0)/HD(1,GPT,"));
    assert_eq!(
        shim.device_path.file_path().as_deref(),
        Some("\\EFI\\redhat\\shimx64.efi")
    );
    assert_eq!(
        image(&ev[35]).device_path.text.as_deref(),
        Some("\\EFI\\redhat\\grubx64.efi")
    );
    // tpm2_eventlog: String "MokList\0" (shim, PCR 14).
    let EventData::Ipl(mok) = decoded(&ev[30]) else {
        panic!()
    };
    assert_eq!(
        (mok.text.as_str(), mok.encoding, mok.nul_terminated),
        ("MokList", TextEncoding::Ascii, true)
    );
    // tpm2_eventlog: SbatLevel VariableData "736261742c31..." in ASCII.
    let VariableValue::Authority(Authority::Text { text }) = variable(&ev[32]).value else {
        panic!()
    };
    assert_eq!(text, "sbat,1,2023012900\nshim,2\ngrub,3\ngrub.debian,4\n");
    // shim's vendor_db authority (openssl: subject O = "Red Hat, Inc.", CN = Red Hat Secure Boot CA 5).
    let vendor_db = variable(&ev[34]);
    assert_eq!(vendor_db.name, "vendor_db");
    let VariableValue::Authority(Authority::Signature { entry }) = vendor_db.value else {
        panic!()
    };
    assert_eq!(
        entry.owner.to_string(),
        "0223eddb-9079-4388-af77-2d65b1c35d3b"
    );
    let SignatureValue::X509(ca) = entry.value else {
        panic!()
    };
    assert_eq!(
        ca.subject.as_deref(),
        Some("O=Red Hat, Inc., CN=Red Hat Secure Boot CA 5, Email=secalert@redhat.com")
    );
    assert_eq!(
        hex::encode(ca.sha256),
        "40175d4c7c5ab4bd753a493f47952f1d8dcf1c219b836968a693e48bd4766135"
    );
    // tpm2_eventlog: String "grub_cmd: set pager=1\0", digest = sha256("set pager=1").
    let pager = ev
        .iter()
        .find(|e| e.event_type == EV_IPL && e.data == b"grub_cmd: set pager=1\0")
        .unwrap();
    assert_eq!(ipl_measured_bytes(&pager.data), Some(&b"set pager=1"[..]));
    assert_eq!(
        hex::encode(&pager.digests[0].1),
        "fc1ac040fc293ed95e4594b67c4378a832d67c8951a3a5e7032e919eb99c5f88"
    );
}

#[test]
fn boot_applications_render_a_file_path() {
    for name in [
        "go-attestation/sb_cert_eventlog",
        "keylime/binary_bios_measurements-secureboot",
    ] {
        let mut seen = 0;
        for ev in log(name)
            .iter()
            .filter(|e| e.event_type == EV_EFI_BOOT_SERVICES_APPLICATION)
        {
            let img = image(ev);
            if img.device_path.bytes.is_empty() {
                continue; // images loaded from memory (the kernel by shim/grub)
            }
            let file = img
                .device_path
                .file_path()
                .unwrap_or_else(|| panic!("{name} event {}", ev.num));
            assert!(file.to_ascii_uppercase().ends_with(".EFI"), "{file}");
            assert!(img.device_path.text.as_deref().unwrap().ends_with(&file));
            seen += 1;
        }
        assert!(seen >= 1, "{name}");
    }
}

#[test]
fn other_corpus_forms() {
    // systemd-stub's kernel command line (PCR 12, UTF-16) and its initrd tag.
    let sd = log("tpm2-tools/event-sd-boot-fedora37.bin");
    let EventData::Ipl(cmdline) = decoded(&sd[23]) else {
        panic!()
    };
    assert_eq!(
        (cmdline.text.as_str(), cmdline.encoding),
        (
            " console=ttyS0 console=tty0 efi=debug ",
            TextEncoding::Utf16le
        )
    );
    assert_eq!(
        decoded(&sd[25]),
        EventData::TaggedEvents(vec![TaggedEvent {
            id: 0x8f3b_22ec,
            data: b"Linux initrd\0".to_vec()
        }])
    );
    // A GUID as S-CRTM version (tpm2_eventlog: Event "1efb6b540c1d5540a4ad4ef4bf17b83a").
    let agile = log("go-attestation/crypto_agile_eventlog");
    assert_eq!(
        decoded(&agile[2]),
        EventData::CrtmVersion(CrtmVersion::Guid {
            guid: Guid::parse("546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a").unwrap()
        })
    );
    // Handoff tables: SMBIOS 3.0 (keylime, PCR 1).
    let kl = log("keylime/binary_bios_measurements");
    let handoff = kl
        .iter()
        .find(|e| e.event_type == EV_EFI_HANDOFF_TABLES)
        .unwrap();
    let EventData::HandoffTables(t) = decoded(handoff) else {
        panic!()
    };
    assert_eq!(t.tables.len(), 1);
    assert_eq!(t.tables[0].name, Some("SMBIOS 3.0"));
    // StartupLocality 3 (keylime binary_bios_measurements, event 1).
    assert_eq!(decoded(&kl[1]), EventData::StartupLocality(3));
    // POST code as a label and as a blob.
    let post = log("tpm2-tools/event-postcode.bin");
    let blob = post.iter().find(|e| e.event_type == EV_POST_CODE).unwrap();
    assert!(matches!(
        decoded(blob),
        EventData::PostCode(PostCode::Blob(_))
    ));
    let labels: Vec<String> = kl
        .iter()
        .filter(|e| e.event_type == EV_POST_CODE)
        .map(|e| match decoded(e) {
            EventData::PostCode(PostCode::Text(t)) => t.text,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(labels, ["ACPI DATA", "ACPI DATA"]);
}
