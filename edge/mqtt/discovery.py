"""Home Assistant MQTT discovery: the retained config messages that make a door appear by itself.

Home Assistant reads ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``; each
payload names the topic the entity's value comes from and how to read it. Every entity belongs
to one device per door and is wired to the door's availability topic, so a door that goes away
(last will) shows as unavailable.
"""

from __future__ import annotations

from edge import __version__
from edge.classes import MASKNET_CLASSES
from edge.mqtt.topics import Topics

# the Mask-net classes' names as shown in Home Assistant
CLASS_NAMES: dict[str, str] = {
    "mask": "Masks today",
    "mask_incorrect": "Masks worn wrong today",
    "no_mask": "No mask today",
}


def discovery_configs(topics: Topics, discovery_prefix: str) -> dict[str, dict[str, object]]:
    """Topic -> config payload for every entity of the door."""
    door = topics.door
    device = {
        "identifiers": [f"masknet_{door}"],
        "name": f"Mask-net {door}",
        "manufacturer": "Mask-net Edge",
        "model": "door mask checker",
        "sw_version": __version__,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "has_entity_name": True,
    }
    configs: dict[str, dict[str, object]] = {}

    def add(component: str, object_id: str, **fields: object) -> None:
        payload = {"unique_id": f"masknet_{door}_{object_id}", **fields, **common}
        configs[f"{discovery_prefix}/{component}/{door}/{object_id}/config"] = payload

    add(
        "sensor", "last_verdict",
        name="Last verdict",
        icon="mdi:face-mask",
        state_topic=topics.last,
        value_template="{{ value_json.class_id }}",
        json_attributes_topic=topics.last,
        json_attributes_template=(
            "{{ {'sub_type': value_json.sub_type, 'advice': value_json.advice, "
            "'score': value_json.score, 'timestamp': value_json.timestamp, "
            "'event_id': value_json.id} | tojson }}"
        ),
    )
    add(
        "sensor", "light",
        name="Light",
        icon="mdi:traffic-light",
        state_topic=topics.state,
        value_template="{{ value_json.light }}",
        json_attributes_topic=topics.state,
        json_attributes_template="{{ {'sub_type': value_json.sub_type, 'people': value_json.people} | tojson }}",
    )
    for class_id in MASKNET_CLASSES:
        add(
            "sensor", f"{class_id}_today",
            name=CLASS_NAMES[class_id],
            icon="mdi:counter",
            state_topic=topics.counters,
            value_template=f"{{{{ value_json.counts.{class_id} }}}}",
            unit_of_measurement="people",
            state_class="total_increasing",  # resets at local midnight
        )
    add(
        "binary_sensor", "person",
        name="Person at the door",
        device_class="occupancy",
        state_topic=topics.state,
        value_template="{{ 'ON' if value_json.people > 0 else 'OFF' }}",
        payload_on="ON",
        payload_off="OFF",
    )
    add(
        "sensor", "fps",
        name="Frame rate",
        state_topic=topics.counters,
        value_template="{{ value_json.health.fps }}",
        unit_of_measurement="fps",
        state_class="measurement",
        entity_category="diagnostic",
    )
    add(
        "sensor", "events_lost",
        name="Events lost",
        state_topic=topics.counters,
        value_template="{{ value_json.health.events_lost }}",
        state_class="total_increasing",
        entity_category="diagnostic",
    )
    return configs
