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

    # sensors whose state is one field of a JSON topic and whose attributes are other fields:
    # (object id, name, icon, topic, state field, {attribute: field})
    for object_id, name, icon, topic, field, attributes in (
        ("last_verdict", "Last verdict", "mdi:face-mask", topics.last, "class_id",
         {"sub_type": "sub_type", "advice": "advice", "score": "score", "timestamp": "timestamp",
          "event_id": "id"}),
        ("light", "Light", "mdi:traffic-light", topics.state, "light",
         {"sub_type": "sub_type", "people": "people"}),
    ):
        pairs = ", ".join(f"'{a}': value_json.{f}" for a, f in attributes.items())
        add(
            "sensor", object_id,
            name=name,
            icon=icon,
            state_topic=topic,
            value_template=f"{{{{ value_json.{field} }}}}",
            json_attributes_topic=topic,
            json_attributes_template=f"{{{{ {{{pairs}}} | tojson }}}}",
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
    # health figures, as diagnostics: (object id, name, state class, unit)
    for figure, name, state_class, unit in (
        ("fps", "Frame rate", "measurement", "fps"),
        ("events_lost", "Events lost", "total_increasing", None),
    ):
        extra = {"unit_of_measurement": unit} if unit else {}
        add(
            "sensor", figure,
            name=name,
            state_topic=topics.counters,
            value_template=f"{{{{ value_json.health.{figure} }}}}",
            state_class=state_class,
            entity_category="diagnostic",
            **extra,
        )
    return configs
